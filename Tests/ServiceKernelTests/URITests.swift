import ServiceKernel
import Testing
import TestKit

@Suite(.bounded) struct URITests {
    @Test func aDestinationIsLocalOnlyWhenItNamesThisNode() {
        let uris = URIManager(node: "a")
        #expect(uris.localPath("/x/y") == "/x/y")
        #expect(uris.localPath("decos://a/x/y") == "/x/y")
        #expect(uris.localPath("decos://a") == "/")
        #expect(uris.localPath("decos://localhost/x") == "/x")
        #expect(uris.localPath("decos:///x") == "/x")
        // Another node, one whose name starts like this one's, and one this name starts like.
        #expect(uris.localPath("decos://b/x") == nil)
        #expect(uris.localPath("decos://ab/x") == nil)
        #expect(URIManager(node: "ab").localPath("decos://a/x") == nil)
        // Not a decos:// URI at all.
        #expect(uris.localPath("http://a/x") == nil)
        #expect(uris.localPath("decos:/") == nil)
        #expect(uris.localPath("") == nil)
        // Names outside ASCII compare by their bytes.
        #expect(URIManager(node: "nœud").localPath("decos://nœud/x") == "/x")
        #expect(URIManager(node: "nœud").localPath("decos://noeud/x") == nil)
    }

    @Test func theHostOfAURI() {
        #expect(URIManager.host(of: "decos://b/kv") == "b")
        #expect(URIManager.host(of: "decos://b") == "b")
        #expect(URIManager.host(of: "decos:///kv") == "")
        #expect(URIManager.host(of: "/kv") == nil)
        #expect(URIManager.host(of: "decoz://b/kv") == nil)
    }
}
