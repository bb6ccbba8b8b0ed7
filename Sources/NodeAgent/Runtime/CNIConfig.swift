import Foundation

/// The pod network on runtimes that use CNI (containerd, CRI-O): when the runtime's CNI
/// configuration directory holds no network, the agent writes one for its node's pod CIDR — a
/// bridge (`cox0`, the gateway at the CIDR's first address) with host-local addresses — as
/// kubenet-style setups do. An existing configuration is never touched: the operator's wins.
public enum CNIConfig {
    public static let fileName = "10-coxswain.conflist"

    /// Writes the bridge network for `podCIDR` into `directory` unless a network is configured
    /// there already. Returns the file written, or nil when one existed.
    @discardableResult
    public static func ensure(directory: String, podCIDR: String, bridge: String = "cox0") throws -> String? {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let existing = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".conflist") || $0.hasSuffix(".conf") || $0.hasSuffix(".json") }
        if !existing.isEmpty { return nil }
        let config: [String: Any] = [
            "cniVersion": "0.4.0",
            "name": "coxswain",
            "plugins": [[
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": [
                    "type": "host-local",
                    "ranges": [[["subnet": podCIDR]]],
                    "routes": [["dst": "0.0.0.0/0"]],
                ] as [String: Any],
            ] as [String: Any]],
        ]
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        let path = (directory as NSString).appendingPathComponent(fileName)
        // Written whole, then renamed: the runtime watches the directory and must not read half a file.
        let temporary = (directory as NSString).appendingPathComponent(".\(fileName).tmp")
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw RuntimeError("cannot write \(path): \(String(cString: strerror(errno)))") }
        return path
    }
}
