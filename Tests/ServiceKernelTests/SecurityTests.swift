import Infoset
import ServiceKernel
import StandardServices
import Testing
import TestKit

@Suite(.bounded) struct SecurityTests {
    let policy = SecurityPolicy(
        tokens: [.init(name: "ops", secret: "0123456789abcdef-ops")],
        registrations: [.init(contract: Counter.contract, names: ["/counter", "/counter-*"])],
        rules: [
            .init(id: "no-reset", allow: false, principals: ["*"], verbs: [.replace], paths: ["/counter"]),
            .init(id: "ops", allow: true, principals: ["token:ops"]),
            .init(id: "public-read", allow: true, principals: ["anonymous"], verbs: [.get, .query, .lookup]),
            .init(id: "locals", allow: true, principals: ["service:*"]),
        ])

    @Test func rulesDecideInOrderAndDenialsNameTheRule() async throws {
        let k = try await makeKernel(policy: policy)
        let read = await k.send(Message(.get, to: "/counter"), as: .anonymous)
        #expect(read.fault == nil)
        let write = await k.send(Message(.update, to: "/counter", body: increment(1)), as: .anonymous)
        #expect(write.fault?.subcode?.local == "Denied")
        #expect(write.fault?.reason.contains("no rule allows") == true)
        let reset = await k.send(Message(.replace, to: "/counter"), as: .token("ops"))
        #expect(reset.fault?.reason.contains("'no-reset'") == true)
        let ops = await k.send(Message(.update, to: "/counter", body: increment(1)), as: .token("ops"))
        #expect(ops.fault == nil)
        let local = await k.send(Message(.update, to: "/counter", body: increment(1)), as: .service("/x"))
        #expect(local.fault == nil)
    }

    @Test func tokensMapToPrincipals() {
        let s = SecurityManager(policy: policy, exposed: true)
        #expect(s.principal(forToken: "0123456789abcdef-ops") == .token("ops"))
        #expect(s.principal(forToken: "0123456789abcdef-opX") == nil)
    }

    @Test func registrationIsApprovedByContract() async throws {
        let k = try await makeKernel(policy: policy)
        let bad = await #expect(throws: Fault.self) { try await k.create(ServiceConfig(contract: Counter.contract, name: "/evil")) }
        #expect(bad?.reason.contains("may not register /evil") == true)
        let other = await #expect(throws: Fault.self) { try await k.create(ServiceConfig(contract: KeyValueStore.contract, name: "/kv")) }
        #expect(other?.reason.contains("no <Register> rule") == true)
        #expect(try await k.create(ServiceConfig(contract: Counter.contract, name: "/counter-b")).path == "/counter-b")
    }

    @Test func openPolicyIsReadOnlyForAnonymousOnlyWhenExposed() async throws {
        let local = try await makeKernel(policy: nil, exposed: false)
        #expect(await local.send(Message(.update, to: "/counter", body: increment(1)), as: .anonymous).fault == nil)
        let exposed = try await makeKernel(policy: nil, exposed: true)
        #expect(await exposed.send(Message(.get, to: "/counter"), as: .anonymous).fault == nil)
        let denied = await exposed.send(Message(.update, to: "/counter", body: increment(1)), as: .anonymous)
        #expect(denied.fault?.reason.contains("exposed-read-only") == true)
        #expect(await exposed.send(Message(.update, to: "/counter", body: increment(1)), as: .service("/x")).fault == nil)
    }
}

@Suite(.bounded) struct OperatorTokenTests {
    @Test func theOperatorMayDoWhatAnonymousMayNotOnAnExposedGateway() {
        let s = SecurityManager(policy: nil, exposed: true, operatorSecret: "operator-secret-0123")
        #expect(s.principal(forToken: "operator-secret-0123") == .token("operator"))
        #expect(s.principal(forToken: "operator-secret-0124") == nil)
        #expect(s.authorize(.token("operator"), .submit, path: "/os/node") == nil)
        #expect(s.authorize(.anonymous, .submit, path: "/os/node") != nil)
    }

    @Test func theOperatorComesBeforeTheManifestsRules() {
        let deny = SecurityPolicy(rules: [.init(id: "none", allow: false, principals: ["*"])])
        let s = SecurityManager(policy: deny, exposed: true, operatorSecret: "operator-secret-0123")
        #expect(s.authorize(.token("operator"), .submit, path: "/os/node") == nil)
        #expect(s.authorize(.token("ops"), .get, path: "/counter") != nil)
    }

    @Test func withoutAnOperatorSecretTheNameOperatorIsNotSpecial() {
        let s = SecurityManager(policy: SecurityPolicy(rules: []), exposed: false)
        #expect(s.authorize(.token("operator"), .get, path: "/x") != nil)
    }
}
