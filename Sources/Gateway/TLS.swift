#if canImport(Glibc)
import Glibc
#endif
import NIOSSL
import ProcessKernel
import ServiceKernel

/// HTTPS for the gateway and for `decos ctl`: TLS 1.2 or 1.3 through swift-nio-ssl (BoringSSL).
public enum TLS {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The server's context, from the PEM files the manifest names: read and checked at boot, so
    /// a missing file, a key that is not the certificate's or a file that is not PEM stops the
    /// boot with a line that says which.
    static func serverContext(certificate: String, key: String) throws(Failure) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        let privateKey: NIOSSLPrivateKey
        do { chain = try NIOSSLCertificate.fromPEMBytes(try pem(certificate)) } catch {
            throw Failure(description: "certificate \(certificate): \(error)")
        }
        guard !chain.isEmpty else { throw Failure(description: "certificate \(certificate) holds no PEM certificate") }
        do { privateKey = try NIOSSLPrivateKey(bytes: try pem(key), format: .pem) } catch {
            throw Failure(description: "key \(key): \(error)")
        }
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        config.minimumTLSVersion = .tlsv12
        do { return try NIOSSLContext(configuration: config) } catch {
            throw Failure(description: "certificate \(certificate) and key \(key) do not make a TLS server (is the key the certificate's?): \(error)")
        }
    }

    /// A client's context: the server must present a certificate for the host asked for, signed by
    /// `cacert` (a PEM file: a CA, or a node's self-signed certificate) or else by the system's CAs.
    public static func clientContext(cacert: String?) throws(Failure) -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        if let cacert {
            do { config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(try pem(cacert))) } catch {
                throw Failure(description: "--cacert \(cacert): \(error)")
            }
        }
        do { return try NIOSSLContext(configuration: config) } catch { throw Failure(description: "TLS client: \(error)") }
    }

    /// What a client's TLS failure means, in the terms of what to do about it.
    static func explain(_ e: NIOSSLError) -> String {
        let text = "\(e)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the server's certificate is not signed by a CA this client trusts (give the node's certificate or its CA with --cacert)"
        }
        if case .handshakeFailed = e { return "the TLS handshake failed: \(text)" }
        return text
    }

    private static func pem(_ path: String) throws(Failure) -> [UInt8] {
        guard let bytes = readFile(path) else { throw Failure(description: "cannot read the file (\(String(cString: strerror(errno))))") }
        return bytes
    }
}
