import Foundation
import Testing
import TestKit

/// Buffers at the edge with clients nobody here wrote: curl sends an MTOM request
/// (multipart/related, its parts named by Content-ID), Python's email package reads the MTOM reply;
/// and `decos ctl --buffer` both ways. Against the real binary on examples/node.xml (`/echo`).
@Suite(.bounded, .ownThreads, .serialized) struct MTOMProcessTests {
    @Test func curlSendsABufferAndPythonReadsItBackAndDecosCtlDoesBoth() throws {
        let node = try NodeProcess()
        let dir = NSTemporaryDirectory() + "decos-mtom-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/back", withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let data = Data((0..<3_000_000).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try data.write(to: URL(fileURLWithPath: dir + "/data.bin"))
        try #"""
        <e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:d="urn:decos:soap" xmlns:xop="http://www.w3.org/2004/08/xop/include"><e:Header><a:Action>urn:decos:verb:Submit</a:Action><d:Buffer id="photo"><xop:Include href="cid:photo@client"/></d:Buffer></e:Header><e:Body><Note>a photo</Note></e:Body></e:Envelope>
        """#.write(toFile: dir + "/env.xml", atomically: true, encoding: .utf8)
        // curl makes the multipart body (and appends the boundary to the type given here).
        let sent = try curl("-D", dir + "/headers", "-o", dir + "/reply",
                            "-H", #"Content-Type: multipart/related; type="application/xop+xml"; start="<root>"; start-info="application/soap+xml""#,
                            "-H", "Accept: multipart/related",
                            "-F", #"env=@\#(dir)/env.xml;type=application/xop+xml;headers="Content-ID: <root>""#,
                            "-F", #"photo=@\#(dir)/data.bin;type=application/octet-stream;headers="Content-ID: <photo@client>""#,
                            node.base + "/echo")
        #expect(sent.status == 0, "\(sent.err)")
        // Python's email package reads the reply: the envelope part, then the buffer's bytes.
        let read = try run("/usr/bin/python3", ["-c", """
            import email, email.policy, sys
            # The last head: a 100 Continue may come first.
            head = open(sys.argv[1], "rb").read().strip().split(b"\\r\\n\\r\\n")[-1].split(b"\\r\\n")
            ctype = [l for l in head if l.lower().startswith(b"content-type:")][0]
            msg = email.message_from_bytes(ctype + b"\\r\\n\\r\\n" + open(sys.argv[2], "rb").read(), policy=email.policy.HTTP)
            parts = list(msg.iter_parts())
            print(head[0].decode(), len(parts))
            print(b'id="photo"' in parts[0].get_payload(decode=True), b"a photo" in parts[0].get_payload(decode=True))
            print(parts[1].get_payload(decode=True) == open(sys.argv[3], "rb").read())
            """, dir + "/headers", dir + "/reply", dir + "/data.bin"])
        #expect(read.out.split(separator: "\n") == ["HTTP/1.1 200 OK 2", "True True", "True"], "\(read.out)\(read.err)")
        // decos ctl: --buffer sends the file as a part; the buffer that comes back is written out.
        let ctl = try decos("ctl", "submit", node.base + "/echo", "--body", "<Note>again</Note>", "--buffer", "photo=@\(dir)/data.bin",
                            "--buffer-dir", dir + "/back")
        #expect(ctl.status == 0, "\(ctl.err)")
        #expect(ctl.out.contains("<Note>again</Note>"))
        #expect(FileManager.default.contents(atPath: dir + "/back/photo") == data)
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func aClientThatAsksToContinueIsToldToBeforeItSendsTheBody() throws {
        let node = try NodeProcess()
        let c = try RawConnection(port: node.port)
        let envelope = #"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><e:Header><a:Action>urn:decos:verb:Get</a:Action></e:Header><e:Body/></e:Envelope>"#
        c.send("POST /counter HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/soap+xml\r\nContent-Length: \(envelope.utf8.count)\r\nExpect: 100-continue\r\n\r\n")
        // curl waits up to a second for this before each large body; without it every buffer paid that second.
        let interim = c.read { $0.contains("\r\n\r\n") }
        #expect(interim?.hasPrefix("HTTP/1.1 100 Continue\r\n") == true, "\(interim ?? "closed")")
        c.send(envelope)
        let reply = c.read { $0.contains("</env:Envelope>") }
        #expect(reply?.contains("HTTP/1.1 200 OK") == true && reply?.contains("<Value>0</Value>") == true, "\(reply ?? "closed")")
    }
}
