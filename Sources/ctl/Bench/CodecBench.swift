import API
import ArgumentParser
import SwiftProtobuf

/// Encode and decode of a realistic Pod, protobuf against Kubernetes JSON.
struct CodecBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "codec", abstract: "Pod encode+decode: protobuf vs JSON.")

    @Option(help: "Encode+decode round trips per run.") var iterations = 20_000
    @Option(help: "Runs; the median is reported.") var runs = 5

    func run() throws {
        let pod = Samples.pod()
        let protobuf: [UInt8] = try pod.serializedBytes()
        let json = pod.jsonBytes()
        print("machine: \(machineDescription())")
        print("pod: \(protobuf.count) bytes protobuf, \(json.count) bytes JSON (size ratio \(fmt(Double(protobuf.count) / Double(json.count), 2)))")
        var results: [String: [Double]] = [:]
        var sink = 0
        for _ in 0..<runs {
            // Interleave formats within a run so machine noise hits both alike.
            var t = Stopwatch()
            for _ in 0..<iterations { sink &+= ((try? pod.serializedBytes()) as [UInt8]?)?.count ?? 0 }
            results["protobuf encode", default: []].append(t.seconds)
            t = Stopwatch()
            for _ in 0..<iterations { sink &+= (try? Pod(serializedBytes: protobuf))?.spec.containers.count ?? 0 }
            results["protobuf decode", default: []].append(t.seconds)
            t = Stopwatch()
            for _ in 0..<iterations { sink &+= pod.jsonBytes().count }
            results["json encode", default: []].append(t.seconds)
            t = Stopwatch()
            for _ in 0..<iterations { sink &+= (try? Pod(jsonBytes: json))?.spec.containers.count ?? 0 }
            results["json decode", default: []].append(t.seconds)
        }
        func perOp(_ name: String) -> Double { median(results[name]!) / Double(iterations) * 1e9 }
        print("median of \(runs) runs × \(iterations) ops (ns/op):")
        for name in ["protobuf encode", "protobuf decode", "json encode", "json decode"] {
            print("  \(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(fmt(perOp(name), 0))")
        }
        let pb = perOp("protobuf encode") + perOp("protobuf decode")
        let js = perOp("json encode") + perOp("json decode")
        print("encode+decode: protobuf \(fmt(pb, 0)) ns, JSON \(fmt(js, 0)) ns; protobuf is \(fmt(js / pb, 2))× faster")
        if sink == 42 { print("") }
    }
}

import Foundation
