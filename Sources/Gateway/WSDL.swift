import Infoset
import ServiceKernel

/// A service described as WSDL 1.1 with a SOAP 1.2 document/literal binding (`GET /path?wsdl`),
/// for clients that generate code from a description (zeep, wsimport, svcutil).
///
/// Bodies are elements in no namespace, as services read and write them, so the schema has no
/// target namespace and parts name their elements unprefixed, where no default namespace is in
/// scope. Each input carries `wsam:Action`: a client that honours it sends the `wsa:Action`
/// header the gateway routes by (the Content-Type's `action` parameter serves those that don't).
enum WSDL {
    static let wsdl = "http://schemas.xmlsoap.org/wsdl/"
    static let soap12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
    static let xsd = "http://www.w3.org/2001/XMLSchema"
    static let wsam = "http://www.w3.org/2007/05/addressing/metadata"
    static let xmlns = "http://www.w3.org/2000/xmlns/"
    static let contentType = "text/xml; charset=utf-8"

    /// The document for the service at `address` implementing `contract`. `operations` nil or empty
    /// means its type declares none: every verb but Subscribe (a stream, not a reply) is listed
    /// with any body.
    static func document(contract: String, operations declared: [ServiceOperation]?, address: String) -> Element {
        let undeclared = declared?.isEmpty ?? true
        let operations = undeclared
            ? Verb.allCases.filter { $0 != .subscribe }.map { ServiceOperation($0, takes: .any, returns: .any) }
            : declared!.filter { $0.verb != .subscribe }
        let name = serviceName(contract)

        var schema: [Element] = []
        var declaredElements = Set<String>()
        for op in operations {
            for case .element(let root, let shape) in [op.input, op.output] where declaredElements.insert(root).inserted {
                schema.append(xsdElement(root, shape))
            }
        }
        var children: [Element] = [
            Element(QName(wsdl, "documentation"), text: undeclared
                ? "\(contract): its service type declares no operations, so every verb is listed with any body."
                : "\(contract): one operation per verb. Bodies are elements in no namespace; send wsa:Action (wsam:Action below)."),
            Element(QName(wsdl, "types"), children: [.element(Element(QName(xsd, "schema"), children: schema.map { .element($0) }))]),
        ]
        for op in operations {
            children.append(message("\(op.verb.rawValue)Request", op.input))
            children.append(message("\(op.verb.rawValue)Response", op.output))
        }
        children.append(Element(QName(wsdl, "portType"), attributes: [Attribute(QName("name"), "\(name)PortType")],
                                children: operations.map { op in .element(Element(QName(wsdl, "operation"), attributes: [Attribute(QName("name"), op.verb.rawValue)], children: [
                                    .element(Element(QName(wsdl, "input"), attributes: [Attribute(QName("message"), "tns:\(op.verb.rawValue)Request"),
                                                                                         Attribute(QName(wsam, "Action"), op.verb.action)])),
                                    .element(Element(QName(wsdl, "output"), attributes: [Attribute(QName("message"), "tns:\(op.verb.rawValue)Response"),
                                                                                          Attribute(QName(wsam, "Action"), op.verb.responseAction)])),
                                ])) }))
        let literal = Element(QName(soap12, "body"), attributes: [Attribute(QName("use"), "literal")])
        children.append(Element(QName(wsdl, "binding"), attributes: [Attribute(QName("name"), "\(name)Soap12"), Attribute(QName("type"), "tns:\(name)PortType")],
                                children: [.element(Element(QName(soap12, "binding"), attributes: [Attribute(QName("style"), "document"),
                                                                                                   Attribute(QName("transport"), "http://schemas.xmlsoap.org/soap/http")]))]
                                + operations.map { op in .element(Element(QName(wsdl, "operation"), attributes: [Attribute(QName("name"), op.verb.rawValue)], children: [
                                    .element(Element(QName(soap12, "operation"), attributes: [Attribute(QName("soapAction"), op.verb.action)])),
                                    .element(Element(QName(wsdl, "input"), children: [.element(literal)])),
                                    .element(Element(QName(wsdl, "output"), children: [.element(literal)])),
                                ])) }))
        children.append(Element(QName(wsdl, "service"), attributes: [Attribute(QName("name"), name)], children: [
            .element(Element(QName(wsdl, "port"), attributes: [Attribute(QName("name"), "\(name)Port"), Attribute(QName("binding"), "tns:\(name)Soap12")],
                             children: [.element(Element(QName(soap12, "address"), attributes: [Attribute(QName("location"), address)]))])),
        ]))
        return Element(QName(wsdl, "definitions"),
                       attributes: [Attribute(QName("name"), name), Attribute(QName("targetNamespace"), contract), Attribute(QName(xmlns, "tns"), contract),
                                    // Declared once here (a part's `xsd:anyType` needs xsd in scope), not on each use.
                                    Attribute(QName(xmlns, "xsd"), xsd), Attribute(QName(xmlns, "soap12"), soap12),
                                    Attribute(QName(xmlns, "wsam"), wsam)],
                       children: children.map { .element($0) })
    }

    /// A message of one part: the body's element, `xsd:anyType` for any body, none for no body.
    static func message(_ name: String, _ body: ServiceOperation.Body) -> Element {
        let part: [Attribute]? = switch body {
        case .none: nil
        case .any: [Attribute(QName("name"), "body"), Attribute(QName("type"), "xsd:anyType")]
        case .element(let root, _): [Attribute(QName("name"), "body"), Attribute(QName("element"), root)]
        }
        return Element(QName(wsdl, "message"), attributes: [Attribute(QName("name"), name)],
                       children: part.map { [.element(Element(QName(wsdl, "part"), attributes: $0))] } ?? [])
    }

    /// `<xsd:element name=…>` for a body or field of this shape.
    static func xsdElement(_ name: String, _ shape: InfosetSchema, optional: Bool = false, repeated: Bool = false) -> Element {
        var attributes = [Attribute(QName("name"), name)]
        if optional { attributes.append(Attribute(QName("minOccurs"), "0")) }
        if repeated { attributes.append(Attribute(QName("maxOccurs"), "unbounded")) }
        let content: [Element]
        switch shape {
        case .scalar(let type):
            attributes.append(Attribute(QName("type"), "xsd:\(type)"))
            content = []
        case .enumeration(let values):
            return Element(QName(xsd, "element"), attributes: attributes, children: [
                .element(Element(QName(xsd, "simpleType"), children: [.element(Element(QName(xsd, "restriction"), attributes: [Attribute(QName("base"), "xsd:string")],
                    children: values.map { .element(Element(QName(xsd, "enumeration"), attributes: [Attribute(QName("value"), $0)])) }))])),
            ])
        case .any:
            content = [Element(QName(xsd, "any"), attributes: [Attribute(QName("minOccurs"), "0"), Attribute(QName("maxOccurs"), "unbounded"),
                                                                 Attribute(QName("processContents"), "lax")])]
        case .sequence(let fields):
            content = fields.map { xsdElement($0.name, $0.schema, optional: $0.optional, repeated: $0.repeated) }
        }
        if case .scalar = shape { return Element(QName(xsd, "element"), attributes: attributes) }
        return Element(QName(xsd, "element"), attributes: attributes, children: [
            .element(Element(QName(xsd, "complexType"), children: [.element(Element(QName(xsd, "sequence"), children: content.map { .element($0) }))])),
        ])
    }

    /// An NCName for the service from its contract's last segment: `urn:decos:examples:counter` → `counter`.
    static func serviceName(_ contract: String) -> String {
        let last = contract.split(whereSeparator: { $0 == ":" || $0 == "/" }).last.map(String.init) ?? "service"
        var name = String(last.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
        if name.first.map({ !$0.isLetter && $0 != "_" }) ?? true { name = "_" + name }
        return name
    }
}
