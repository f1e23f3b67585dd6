import Addresses
import Infoset
import ServiceKernel
import Testing
import TestKit
import ProcessKernel

@Suite(.bounded) struct ManifestTests {
    @Test func parsesEverySection() throws {
        let m = try Manifest.parse("""
        <Manifest xmlns="urn:decos:manifest" node="n1">
          <Network><Gateway listen="0.0.0.0:8080" maxRequestBytes="4096" requestTimeout="5"/></Network>
          <Security>
            <Token name="ops" secret="0123456789abcdef"/>
            <Register contract="urn:c" names="/a /b-*"/>
            <Allow id="r" principals="anonymous" verbs="Get Query" paths="/a"/>
            <Deny principals="*"/>
          </Security>
          <Service contract="urn:c" name="/a">
            <Partner name="p" uri="decos://n2/x"/>
            <State><S><V>1</V></S></State>
            <Config><Settings/></Config>
          </Service>
          <Service contract="urn:d"/>
        </Manifest>
        """, file: "m.xml")
        #expect(m.node == "n1")
        #expect(m.gateway == GatewayBinding(host: "0.0.0.0", port: 8080, maxRequestBytes: 4096, requestTimeout: 5))
        #expect(m.security?.rules.map(\.id) == ["r", "deny@7"])
        #expect(m.security?.rules[0].verbs == [.get, .query])
        #expect(m.services.count == 2)
        #expect(m.services[0].partners == ["p": "decos://n2/x"])
        #expect(m.services[0].state?.name.local == "S")
        #expect(m.services[0].location == SourceLocation(file: "m.xml", line: 9, column: 3))
        #expect(m.services[1].name == nil)
    }

    @Test func everyErrorIsReportedWithFileLineAndColumn() {
        let text = """
        <Manifest xmlns="urn:decos:manifest" node="bad name">
          <Service name="/x"/>
          <Service contract="urn:c" name="nope" colour="red"/>
          <Service contract="urn:c" name="/dup"/>
          <Service contract="urn:c" name="/dup"/>
          <Widget/>
          <Security><Allow principals="root" verbs="Fly"/></Security>
        </Manifest>
        """
        do {
            _ = try Manifest.parse(text, file: "bad.xml")
            Issue.record("accepted a bad manifest")
        } catch {
            let lines = error.errors.map(\.description)
            #expect(lines.contains { $0.hasPrefix("bad.xml:1:1: error: node name") })
            #expect(lines.contains { $0.hasPrefix("bad.xml:2:3: error: <Service> needs the attribute \"contract\"") })
            #expect(lines.contains { $0.hasPrefix("bad.xml:3:3: error: <Service> has no attribute \"colour\"") })
            #expect(lines.contains { $0.hasPrefix("bad.xml:3:3: error: name \"nope\"") })
            #expect(lines.contains { $0.hasPrefix("bad.xml:5:3: error: the name /dup is already used by the service at line 4") })
            #expect(lines.contains { $0.hasPrefix("bad.xml:6:3: error: unknown element <Widget>") })
            #expect(lines.contains { $0.contains("unknown verb \"Fly\"") })
            #expect(lines.contains { $0.contains("principal \"root\"") })
        }
    }

    @Test func malformedXMLPointsAtTheSpot() {
        do {
            _ = try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\">\n  <Service contract=\"x\">\n</Manifest>", file: "m.xml")
            Issue.record("accepted malformed XML")
        } catch {
            #expect(error.errors.first?.location == SourceLocation(file: "m.xml", line: 3, column: 1))
        }
    }

    @Test func aTokenCannotBeNamedOperator() {
        // Its holder would have had every right wherever the appliance has an operator secret.
        let text = """
        <Manifest xmlns="urn:decos:manifest">
          <Security><Token name="operator" secret="not-the-operator-0123456789"/></Security>
        </Manifest>
        """
        do {
            _ = try Manifest.parse(text, file: "m.xml")
            Issue.record("a token named operator was accepted")
        } catch {
            #expect(error.errors.contains { $0.message.contains("reserved") && $0.location.line == 2 })
        }
    }

    @Test func theBufferPoolLimitTakesSizesWithUnitsAndRefusesNonsense() throws {
        func limit(_ v: String) throws -> Int? {
            try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\"><Memory buffers=\"\(v)\"/></Manifest>").bufferLimit
        }
        #expect(try limit("512MiB") == 512 << 20)
        #expect(try limit("2 GiB") == 2 << 30)
        #expect(try limit("16777216") == 16 << 20)
        for bad in ["lots", "1KiB", "-5GiB", "99999999999999999999GiB"] {
            #expect(throws: ManifestErrors.self, "buffers=\"\(bad)\"") { try limit(bad) }
        }
        #expect(try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\"/>").bufferLimit == nil)
        let reserving = try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\"><Memory buffers=\"64MiB\" reserve=\"8MiB\"/></Manifest>")
        #expect(reserving.bufferReserve == 8 << 20)
        for bad in ["64MiB", "-5", "-5MiB"] {
            #expect(throws: ManifestErrors.self, "reserve=\"\(bad)\"") { try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\"><Memory buffers=\"8MiB\" reserve=\"\(bad)\"/></Manifest>") }
        }
        #expect(throws: ManifestErrors.self) { try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\"><Memory reserve=\"1MiB\"/><Memory reserve=\"1MiB\"/></Manifest>") }
    }

    @Test func dataPlanePreferenceIsKnownNamesOnceEachBesideACluster() throws {
        func parse(_ prefer: String, cluster: Bool = true) throws -> Manifest {
            try Manifest.parse("<Manifest xmlns=\"urn:decos:manifest\"><Network>\(cluster ? "<Cluster keyFile=\"/k\"/>" : "")<DataPlane prefer=\"\(prefer)\"/></Network></Manifest>")
        }
        #expect(try parse("xdp tcp").cluster?.dataPlanes == ["xdp", "tcp"])
        #expect(try parse("rdma,tcp").cluster?.dataPlanes == ["rdma", "tcp"])
        for bad in ["", "tcp tcp", "udp", "rdma carrier-pigeon"] {
            #expect(throws: ManifestErrors.self, "prefer=\"\(bad)\"") { try parse(bad) }
        }
        #expect(throws: ManifestErrors.self) { try parse("tcp", cluster: false) }
    }

    @Test func metricsAreOnUnlessTheGatewaySaysOff() throws {
        let on = try Manifest.parse(#"<Manifest xmlns="urn:decos:manifest"><Network><Gateway listen=":0"/></Network></Manifest>"#)
        #expect(on.gateway?.metrics == true)
        let off = try Manifest.parse(#"<Manifest xmlns="urn:decos:manifest"><Network><Gateway listen=":0" metrics="off"/></Network></Manifest>"#)
        #expect(off.gateway?.metrics == false)
        #expect(throws: ManifestErrors.self) {
            try Manifest.parse(#"<Manifest xmlns="urn:decos:manifest"><Network><Gateway metrics="no"/></Network></Manifest>"#)
        }
    }

    @Test func gatewayNamesAndCapsParseAndTimesAreBounded() throws {
        let m = try Manifest.parse(#"<Manifest xmlns="urn:decos:manifest"><Network><Gateway hosts="Node-A.lan, decos.example" maxConnections="10" maxConnectionsPerClient="3" maxRequestsInFlight="5" maxStreams="2"/></Network></Manifest>"#)
        #expect(m.gateway?.hosts == ["node-a.lan", "decos.example"])
        #expect(m.gateway.map { [$0.maxConnections, $0.maxConnectionsPerClient, $0.maxRequestsInFlight, $0.maxStreams] } == [10, 3, 5, 2])
        // Times past what the event loop's clock can hold were a trap at the first request.
        for bad in [#"<Gateway requestTimeout="9300000000"/>"#, #"<Gateway idleTimeout="86401"/>"#, #"<Gateway hosts="evil/.example"/>"#,
                    #"<Cluster keyFile="/k" probeInterval="99999999999"/>"#] {
            #expect(throws: ManifestErrors.self, "\(bad)") { try Manifest.parse(#"<Manifest xmlns="urn:decos:manifest"><Network>\#(bad)</Network></Manifest>"#) }
        }
    }

    @Test func wrongRootIsNamed() {
        #expect(throws: ManifestErrors.self) { try Manifest.parse("<Manifest/>") }
    }

    @Test func gatewayAddressesParse() {
        #expect(parseHostPort("127.0.0.1:7480")! == ("127.0.0.1", 7480))
        #expect(parseHostPort("[::1]:80")! == ("::1", 80))
        #expect(parseHostPort(":0")! == ("127.0.0.1", 0))
        #expect(parseHostPort("host") == nil)
        #expect(parseHostPort("h:99999") == nil)
    }
}

@Suite(.bounded) struct ManifestProcessTests {
    @Test func processesKeepTheirArgumentsEnvironmentAndPolicy() throws {
        let m = try Manifest.parse("""
        <Manifest xmlns="urn:decos:manifest">
          <Process name="agent" path="/bin/agent" restart="always"><Arg>--port</Arg><Arg>9000</Arg><Env>MODE=fast</Env></Process>
          <Process name="once" path="/bin/true"/>
        </Manifest>
        """)
        #expect(m.processes.map(\.name) == ["agent", "once"])
        #expect(m.processes[0].arguments == ["--port", "9000"])
        #expect(m.processes[0].environment == ["MODE=fast"])
        #expect(m.processes[0].restart == .always)
        #expect(m.processes[1].restart == .onFailure)
    }

    @Test func badProcessesAreReportedWithTheirLines() {
        do {
            _ = try Manifest.parse("""
            <Manifest xmlns="urn:decos:manifest">
              <Process name="a" path="relative/prog"/>
              <Process name="b" path="/bin/b" restart="sometimes"/>
              <Process name="b" path="/bin/c"><Env>NOEQUALS</Env></Process>
            </Manifest>
            """, file: "p.xml")
            Issue.record("expected errors")
        } catch {
            let lines = error.errors.map { "\($0.location.line): \($0.message)" }
            #expect(lines.contains("2: path=\"relative/prog\" must be absolute"))
            #expect(lines.contains("3: restart=\"sometimes\" must be always, on-failure, never"))
            #expect(lines.contains("4: <Env> is NAME=VALUE, found \"NOEQUALS\""))
            #expect(lines.contains("4: the process name b is already used"))
        }
    }
}

@Suite(.bounded) struct StorageManifestTests {
    @Test func durableServicesAndStorageAreRead() throws {
        let m = try Manifest.parse("""
        <Manifest xmlns="urn:decos:manifest">
          <Storage path="/var/lib/decos"/>
          <Service contract="urn:c" name="/a" durable="true"/>
          <Service contract="urn:c" name="/b" durable="false"/>
        </Manifest>
        """)
        #expect(m.storage == "/var/lib/decos")
        #expect(m.services.map(\.durable) == [true, false])
    }

    @Test func badStorageAndDurableAttributesAreErrors() {
        #expect { try Manifest.parse("""
        <Manifest xmlns="urn:decos:manifest">
          <Storage path="relative"/>
          <Storage path="/x"/>
          <Service contract="urn:c" durable="true"/>
          <Service contract="urn:c" name="/b" durable="yes"/>
        </Manifest>
        """) } throws: { e in
            let messages = (e as! ManifestErrors).errors.map(\.message)
            return messages == ["path=\"relative\" must be absolute", "only one <Storage> is allowed",
                                "a durable service needs a name=\"…\": its stored state is found by it at the next start",
                                "durable=\"yes\" must be true or false"]
        }
    }
}
