extension String {
    /// The string with each scalar that `replacements` names written as its replacement: the one
    /// way text is escaped for a format that is not XML (HTML in the console, label values in the
    /// metrics' text format). By scalar, not by character, so a "\r\n" pair is no hiding place for
    /// its "\n".
    public func escaping(_ replacements: [Unicode.Scalar: String]) -> String {
        var out = ""
        out.reserveCapacity(utf8.count)
        for s in unicodeScalars {
            if let r = replacements[s] { out += r } else { out.unicodeScalars.append(s) }
        }
        return out
    }
}
