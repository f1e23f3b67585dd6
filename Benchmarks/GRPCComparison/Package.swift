// swift-tools-version:6.1
import PackageDescription

// The gRPC side of the remote-call comparison (Benchmarks/grpc.sh): grpc-swift-2 unary calls with
// the same 100-byte payload as `decos-bench remote`. A package of its own because grpc-swift's
// transport (with BoringSSL) takes ~7 minutes to build, which the main build should not pay.
let package = Package(
    name: "grpc-comparison",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    ],
    targets: [
        .executableTarget(name: "GRPCComparison", dependencies: [
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
