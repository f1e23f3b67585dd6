// swift-tools-version:6.1
import PackageDescription

// Layers, lowest first; a module imports only those above it in this list.
let package = Package(
    name: "decos",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Decos", targets: ["Decos"]),
        .library(name: "DecosCLI", targets: ["DecosCLI"]),
        .executable(name: "decos", targets: ["decos"]),
        .executable(name: "decos-bench", targets: ["DecosBenchmarks"]),
        // Every decoder of outside input, for the fuzz package in Fuzz/ (built with libFuzzer there).
        .library(name: "DecosDecoders", targets: ["Infoset", "ProcessKernel", "DeviceDrivers", "ServiceKernel", "DistributingKernel", "Gateway"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // 4.x: FoundationEssentials only (3.x pulls in all of Foundation and ICU, +45 MB static).
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        // The node's metrics: instruments through swift-metrics, exposed by swift-prometheus.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // HTTPS at the gateway and for `decos ctl`.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        .target(name: "Infoset"),
        // Runs before the Swift runtime as PID 1 (early mounts), plus the syscalls Swift cannot call.
        .target(name: "CDecosInit"),
        .target(name: "Addresses"),
        .target(name: "ProcessKernel", dependencies: ["Addresses", "CDecosInit"]),
        // libibverbs: dynamic in hosted builds; static with the rxe and mlx5 providers in `make static`
        // (linker/static.flags).
        .target(name: "CVerbs", linkerSettings: [.linkedLibrary("ibverbs")]),
        // AES-256-GCM in place with a context keyed once (libcrypto; static in `make static`), for
        // the frames between nodes: swift-crypto's API re-keys and allocates on every call.
        .target(name: "CAEAD", linkerSettings: [.linkedLibrary("crypto")]),
        // libpci's ID database for /os/devices, opened at run time in the hosted build (CPCI.h).
        .target(name: "CPCI"),
        // libnuma: buffer-pool pages on the NUMA node of the NIC that moves them (CNUMA.h).
        .target(name: "CNUMA", linkerSettings: [.linkedLibrary("numa")]),
        // AF_XDP and the XDP program that steers our frames, on bpf(2) and AF_XDP sockets alone (CXDP.h).
        .target(name: "CXDP"),
        // SQLite (libsqlite3-dev; static in `make static`), the engine of durable services' state.
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .target(name: "Storage", dependencies: ["CSQLite"]),
        .target(name: "DeviceDrivers", dependencies: ["Addresses", "ProcessKernel", "CDecosInit", "CVerbs", "CPCI", "CNUMA", "CXDP"]),
        .target(name: "ServiceKernel", dependencies: [
            "Addresses", "Infoset", "ProcessKernel", "Storage", "CDecosInit",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .target(name: "StandardServices", dependencies: ["ServiceKernel", "Infoset", "ProcessKernel", "DeviceDrivers", "Storage"]),
        .target(name: "Gateway", dependencies: [
            "ServiceKernel", "Infoset",
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "DistributingKernel", dependencies: [
            "Addresses", "ServiceKernel", "Infoset", "ProcessKernel", "CAEAD",
            // The RDMA plane's verbs (DeviceDrivers/Verbs.swift).
            "DeviceDrivers", "CVerbs",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Decos", dependencies: [
            "Infoset", "ServiceKernel", "StandardServices", "Gateway", "DistributingKernel", "CDecosInit",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "DecosCLI", dependencies: [
            "Addresses", "Decos", "Gateway", "Infoset", "ServiceKernel", "StandardServices",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "decos", dependencies: ["Decos", "DecosCLI"]),
        // The service-author example: docs/services.md walks through it.
        .executableTarget(name: "decos-greeter", dependencies: ["Decos", "DecosCLI"], path: "examples/greeter"),
        // Benchmarks (run by Benchmarks/run.sh); baselines are measured in the same run.
        .executableTarget(name: "DecosBenchmarks", dependencies: [
            "Decos", "ServiceKernel", "StandardServices", "Infoset", "DistributingKernel",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            "CAEAD", .product(name: "Crypto", package: "swift-crypto"), "CSQLite", "Storage",
        ], path: "Benchmarks/DecosBenchmarks"),
        // Waiting with deadlines, for every test target (Tests/TestKit).
        .target(name: "TestKit", path: "Tests/TestKit"),
        .testTarget(name: "InfosetTests", dependencies: ["TestKit", "Infoset"]),
        .testTarget(name: "ProcessKernelTests", dependencies: ["TestKit", "Addresses", "ProcessKernel"]),
        .testTarget(name: "DeviceDriversTests", dependencies: ["TestKit", "Addresses", "DeviceDrivers", "ProcessKernel", "ServiceKernel"]),
        .testTarget(name: "StorageTests", dependencies: ["TestKit", "Storage"]),
        .testTarget(name: "ServiceKernelTests", dependencies: ["TestKit", "Addresses", "ServiceKernel", "Storage", "StandardServices", "Infoset", "ProcessKernel"]),
        .testTarget(name: "StandardServicesTests", dependencies: ["TestKit", "StandardServices", "ServiceKernel", "Decos"]),
        .testTarget(name: "GatewayTests", dependencies: ["TestKit", "Gateway", "Decos"], exclude: ["Fixtures"]),
        .testTarget(name: "DistributingKernelTests", dependencies: [
            "TestKit", "DistributingKernel", "ServiceKernel", "Infoset", "Decos", "CVerbs",
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SystemTests", dependencies: ["TestKit", "Gateway", "Infoset"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
