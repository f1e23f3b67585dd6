import Foundation
import Testing
import TestKit

/// A certificate made by boot/tls-cert.sh (what `make image TLS=1` runs) in a fresh directory,
/// and the fingerprint it printed.
func selfSignedCertificate(node: String) throws -> (cert: String, key: String, fingerprint: String) {
    let dir = NSTemporaryDirectory() + "decos-tls-\(UUID().uuidString)"
    let r = try run(packageRoot.path + "/boot/tls-cert.sh", [node, dir + "/\(node).crt", dir + "/\(node).key"])
    guard r.status == 0, let line = r.out.split(separator: "\n").first(where: { $0.contains("SHA-256 fingerprint") }) else {
        throw Failure("boot/tls-cert.sh failed: \(r.out)\(r.err)")
    }
    return (dir + "/\(node).crt", dir + "/\(node).key", String(line.split(separator: " ").last!))
}

/// The gateway over TLS, with clients nobody here wrote (curl) and with `decos ctl`.
@Suite(.bounded, .ownThreads) struct HTTPSTests {
    func manifest(cert: String, key: String) throws -> String {
        let path = NSTemporaryDirectory() + "decos-https-\(UUID().uuidString).xml"
        try """
        <Manifest xmlns="urn:decos:manifest" node="secure">
          <Network><Gateway listen="127.0.0.1:0" certificate="\(cert)" key="\(key)"/></Network>
          <Service contract="urn:decos:examples:counter" name="/counter"/>
        </Manifest>
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func aNodeServesHTTPSToCurlAndDecosCtlThatTrustItsCertificate() throws {
        let (cert, key, fingerprint) = try selfSignedCertificate(node: "secure")
        let node = try NodeProcess(manifest: try manifest(cert: cert, key: key))
        #expect(node.base.hasPrefix("https://"))
        // The fingerprint printed is the one the node presents.
        let presented = try run("/bin/sh", ["-c", "openssl s_client -connect 127.0.0.1:\(node.port) </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"])
        #expect(presented.out.contains(fingerprint), "\(presented.out) vs \(fingerprint)")
        // curl, trusting the node's certificate: TLS 1.2 or later, the service's state.
        let get = try curl("--cacert", cert, "-w", "\n%{http_code} %{ssl_verify_result}", node.base + "/counter").out
        #expect(get.hasSuffix("\n200 0") && get.contains("<CounterState><Value>0</Value></CounterState>"), "\(get)")
        #expect(try curl("--cacert", cert, "--tls-max", "1.1", "-o", "/dev/null", "-w", "%{http_code}", node.base + "/counter").out == "000")
        // decos ctl with --cacert changes state; without it, or with another node's, it refuses.
        let update = try decos("ctl", "update", node.base + "/counter", "--cacert", cert, "--body", "<Increment><By>5</By></Increment>")
        #expect(update.status == 0 && update.out.contains("<Value>5</Value>"), "\(update.out)\(update.err)")
        let untrusted = try decos("ctl", "get", node.base + "/counter")
        #expect(untrusted.status == 2 && untrusted.err.contains("the server's certificate is not signed by a CA this client trusts"), "\(untrusted.err)")
        let other = try selfSignedCertificate(node: "other")
        #expect(try decos("ctl", "get", node.base + "/counter", "--cacert", other.cert).status == 2)
        // Plain HTTP to the HTTPS port gets nothing, and the node goes on serving.
        #expect(try curl("-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(node.port)/counter").out == "000")
        #expect(try curl("--cacert", cert, node.base + "/counter").out.contains("<Value>5</Value>"))
    }

    @Test func aKeyThatIsNotTheCertificatesStopsTheBootSayingSo() throws {
        let mine = try selfSignedCertificate(node: "secure")
        let theirs = try selfSignedCertificate(node: "other")
        let r = try decos("run", try manifest(cert: mine.cert, key: theirs.key))
        #expect(r.status != 0 && r.err.contains("do not make a TLS server (is the key the certificate's?)"), "\(r.out)\(r.err)")
        let missing = try decos("run", try manifest(cert: "/nonexistent.crt", key: mine.key))
        #expect(missing.status != 0 && missing.err.contains("certificate /nonexistent.crt: cannot read the file"), "\(missing.out)\(missing.err)")
    }
}
