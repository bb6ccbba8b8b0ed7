// swift-tools-version:6.0
import PackageDescription

// A controller plugin for Coxswain, outside its repository's package: the CronTask kind (Pods on a
// cron schedule) and the controller that runs it, against Coxswain's libraries.
let package = Package(
    name: "CronTask",
    platforms: [.macOS(.v15)],
    dependencies: [
        // This repository's libraries by path; a plugin elsewhere names Coxswain's URL and version.
        .package(name: "Coxswain", path: "../.."),
    ],
    targets: [
        .target(name: "CronTask", dependencies: [
            .product(name: "API", package: "Coxswain"),
            .product(name: "Client", package: "Coxswain"),
            .product(name: "ControllerRuntime", package: "Coxswain"),
        ]),
        .executableTarget(name: "crontask-controller", dependencies: ["CronTask"]),
        .testTarget(name: "CronTaskTests", dependencies: ["CronTask"]),
    ]
)
