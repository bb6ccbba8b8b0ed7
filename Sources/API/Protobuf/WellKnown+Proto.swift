extension Timestamp: ProtoCodable {
    public func writeProto(to w: inout ProtoWriter) {
        if seconds != 0 { w.int64(1, seconds) }
        if nanos != 0 { w.int32(2, nanos) }
    }

    public mutating func mergeProto(from r: inout ProtoReader) throws {
        while let field = try r.nextField() {
            switch field {
            case 1: seconds = try r.int64()
            case 2: nanos = try r.int32()
            default: try r.skip()
            }
        }
    }
}

extension IntOrString: ProtoCodable {
    public func writeProto(to w: inout ProtoWriter) {
        switch value {
        case .intVal(let i): w.int32(1, i)
        case .strVal(let s): w.string(2, s)
        case nil: break
        }
    }

    public mutating func mergeProto(from r: inout ProtoReader) throws {
        while let field = try r.nextField() {
            switch field {
            case 1: value = .intVal(try r.int32())
            case 2: value = .strVal(try r.string())
            default: try r.skip()
            }
        }
    }
}
