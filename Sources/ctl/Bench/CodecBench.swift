import API
import ArgumentParser
import Foundation
import SwiftProtobuf

/// Encode and decode of a realistic Pod: Coxswain's generated protobuf codec against Kubernetes
/// JSON (the baseline), with swift-protobuf's codec for the same bytes as a reference.
struct CodecBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "codec", abstract: "Pod encode+decode: protobuf vs JSON.")

    @Option(help: "Encode+decode round trips per run.") var iterations = 20_000
    @Option(help: "Runs; the median is reported.") var runs = 5

    struct Codec {
        let name: String
        let encode: (Pod) -> Int
        let decode: ([UInt8]) -> Int
        let bytes: [UInt8]
    }

    func run() throws {
        let pod = Samples.pod()
        let codecs = [
            Codec(name: "protobuf (cox)", encode: { $0.protoBytes().count },
                  decode: { (try? Pod(protobuf: $0))?.spec.containers.count ?? 0 }, bytes: pod.protoBytes()),
            Codec(name: "protobuf (swift-protobuf)", encode: { ((try? $0.serializedBytes()) as [UInt8]?)?.count ?? 0 },
                  decode: { (try? Pod(serializedBytes: $0))?.spec.containers.count ?? 0 }, bytes: try pod.serializedBytes()),
            Codec(name: "json", encode: { $0.jsonBytes().count },
                  decode: { (try? Pod(jsonBytes: $0))?.spec.containers.count ?? 0 }, bytes: pod.jsonBytes()),
        ]
        print("machine: \(machineDescription())")
        print("pod: \(codecs[0].bytes.count) bytes protobuf, \(codecs[2].bytes.count) bytes JSON (size ratio \(fmt(Double(codecs[0].bytes.count) / Double(codecs[2].bytes.count), 2)))")
        var encodeTimes: [String: [Double]] = [:]
        var decodeTimes: [String: [Double]] = [:]
        var sink = 0
        for _ in 0..<runs {
            // Interleave the codecs within a run so machine noise hits all alike.
            for codec in codecs {
                var t = Stopwatch()
                for _ in 0..<iterations { sink &+= codec.encode(pod) }
                encodeTimes[codec.name, default: []].append(t.seconds / Double(iterations) * 1e9)
                t = Stopwatch()
                for _ in 0..<iterations { sink &+= codec.decode(codec.bytes) }
                decodeTimes[codec.name, default: []].append(t.seconds / Double(iterations) * 1e9)
            }
        }
        print("median of \(runs) runs × \(iterations) ops, ns/op:")
        var totals: [String: Double] = [:]
        for codec in codecs {
            let e = median(encodeTimes[codec.name]!), d = median(decodeTimes[codec.name]!)
            totals[codec.name] = e + d
            print("  \(codec.name.padding(toLength: 26, withPad: " ", startingAt: 0)) encode \(fmt(e, 0).leftPad(7))  decode \(fmt(d, 0).leftPad(7))  total \(fmt(e + d, 0).leftPad(7))")
        }
        let json = totals["json"]!
        print("encode+decode vs JSON: protobuf (cox) \(fmt(json / totals["protobuf (cox)"]!, 2))× faster; swift-protobuf \(fmt(json / totals["protobuf (swift-protobuf)"]!, 2))×")
        if sink == 42 { print("") }
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
