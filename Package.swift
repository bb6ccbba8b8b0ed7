// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Coxswain",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cox", targets: ["ctl"]),
        .executable(name: "cox-fuzz", targets: ["Fuzz"]),
        // For other packages (controller plugins): no unsafeFlags anywhere on the way, which
        // SwiftPM refuses in a versioned dependency.
        .library(name: "API", targets: ["API"]),
        .library(name: "Store", targets: ["Store"]),
        .library(name: "Client", targets: ["Client"]),
        .library(name: "ControllerRuntime", targets: ["ControllerRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
    ],
    targets: [
        // SQLite from the system (Debian: libsqlite3-dev).
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", providers: [.apt(["libsqlite3-dev"])]),

        // Objects (generated from Protos/), codecs, validation, defaulting, selectors. Knows no HTTP, no storage.
        .target(name: "API", dependencies: [
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // Revisioned object store: SQLite backend, revision log, watch hub, compaction.
        .target(name: "Store", dependencies: [
            "API", "CSQLite", "Etcd",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
        ]),
        // Cluster PKI: CA, serving and client certificates, kubeconfig files.
        .target(name: "PKI", dependencies: [
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // Typed API client over TLS (kubeconfig, JSON or protobuf). Knows nothing of the server.
        .target(name: "Client", dependencies: [
            "API", "PKI",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
        ]),
        // Components. Filled in by later issues; each depends only downward.
        .target(name: "APIServer", dependencies: [
            "API", "Store", "PKI", "Client",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Informer-fed, rate-limited reconcile loops: the work queue, Clock, Reconciler, Controller,
        // leader election and the event recorder. Also the API for controller plugins.
        .target(name: "ControllerRuntime", dependencies: [
            "API", "Client",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "Scheduler", dependencies: ["API", "Client", "ControllerRuntime", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Controllers", dependencies: [
            "API", "Client", "ControllerRuntime",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The Container Runtime Interface (runtime.v1, generated from Protos/cri by
        // scripts/gen-protos.sh) and a connection to a runtime's unix socket.
        .target(name: "CRI", dependencies: [
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        ]),
        // The part of etcd's v3 API the etcd store uses (generated from Protos/etcd by
        // scripts/gen-protos.sh) and a connection to a member.
        .target(name: "Etcd", dependencies: [
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        ]),
        // The node agent: registers its node, runs pods through CRI, serves logs; and the process
        // runtime as a CRI plugin.
        // The system's zlib (SPDY header blocks); a module map, no flags.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "NodeAgent", dependencies: [
            "API", "Client", "PKI", "CRI", "ControllerRuntime", "CZlib",
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The `cox` executable.
        .executableTarget(name: "ctl", dependencies: [
            "API", "Store", "PKI", "Client", "APIServer", "ControllerRuntime", "Scheduler", "Controllers", "NodeAgent", "CRI", "Etcd",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The decoders' fuzz target (scripts/fuzz.sh builds it with libFuzzer); built plainly,
        // a tool that replays a corpus.
        .executableTarget(name: "Fuzz", dependencies: ["API"]),
        .target(name: "TestSupport", dependencies: [
            "API", "Store", "Etcd", "ControllerRuntime", "APIServer", "Client", "PKI", "NodeAgent",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),

        .testTarget(name: "APITests", dependencies: ["API", "TestSupport"]),
        .testTarget(name: "PKITests", dependencies: ["PKI", "TestSupport"]),
        .testTarget(name: "APIServerTests", dependencies: ["APIServer", "API", "Store", "PKI", "Client", "TestSupport", "ctl", "NodeAgent", "Etcd",
                                                         .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                                                         .product(name: "NIOPosix", package: "swift-nio"),
                                                         .product(name: "NIOSSL", package: "swift-nio-ssl"),
                                                         .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                                                         .product(name: "NIOHPACK", package: "swift-nio-http2"),
                                                         .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(name: "NodeAgentTests", dependencies: ["NodeAgent", "CRI", "API", "Client", "PKI", "TestSupport", "ControllerRuntime", "ctl"]),
        .testTarget(name: "ControllerRuntimeTests", dependencies: ["ControllerRuntime", "Client", "API", "TestSupport", "APIServer", "PKI",
                                                                  .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ControllersTests", dependencies: ["Controllers", "ControllerRuntime", "Client", "API", "TestSupport", "APIServer", "PKI", "ctl",
                                                             .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "SchedulerTests", dependencies: ["Scheduler", "API", "Client", "ControllerRuntime", "TestSupport"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "API", "TestSupport", "ctl", "Etcd", "PKI", .product(name: "Logging", package: "swift-log")]),
    ],
    swiftLanguageModes: [.v6]
)
