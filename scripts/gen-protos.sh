#!/usr/bin/env bash
# Regenerates the Swift code for Protos/:
#   Protos/cri/api.proto → Sources/CRI/Generated: CRI messages and gRPC clients/services
#     (protoc-gen-swift and protoc-gen-grpc-swift-2 from grpc-swift-protobuf)
#   Protos/etcd → Sources/Etcd/Generated: etcd v3 messages and gRPC clients
# and Protos/cox → Sources/API/Generated:
#   *.pb.swift               protobuf messages (protoc + protoc-gen-swift from swift-protobuf)
#   JSONCodecs.generated.swift   Kubernetes-compatible JSON codecs (scripts/gen-codecs.py)
#   ProtoCodecs.generated.swift  specialised protobuf codecs (scripts/gen-codecs.py)
#   Schema.generated.swift       the messages' schema: OpenAPI, patches, apply (scripts/gen-codecs.py)
# Installs protoc (Debian protobuf-compiler) and the Python protobuf package if missing, and
# builds protoc-gen-swift from the swift-protobuf version Package.swift resolves to.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq protobuf-compiler
fi
python3 -c 'import google.protobuf' 2>/dev/null || pip install -q protobuf

swift package resolve >/dev/null
plugin_src=.build/checkouts/swift-protobuf
swift build -c release --package-path "$plugin_src" --scratch-path .build-protoc --product protoc-gen-swift
plugin=.build-protoc/release/protoc-gen-swift
grpc_src=.build/checkouts/grpc-swift-protobuf
swift build -c release --package-path "$grpc_src" --scratch-path .build-protoc-grpc --product protoc-gen-grpc-swift-2
grpc_plugin=.build-protoc-grpc/release/protoc-gen-grpc-swift-2

cri=Sources/CRI/Generated
rm -f "$cri"/*.swift
protoc -I Protos/cri --plugin=protoc-gen-swift="$plugin" --plugin=protoc-gen-grpc-swift-2="$grpc_plugin" \
  --swift_out="$cri" --swift_opt=Visibility=Public \
  --grpc-swift-2_out="$cri" --grpc-swift-2_opt=Visibility=Public \
  Protos/cri/api.proto

# Protos/etcd → Sources/Etcd/Generated: the part of etcd's v3 API the etcd store uses (clients only).
etcd=Sources/Etcd/Generated
mkdir -p "$etcd"
rm -f "$etcd"/*.swift
protoc -I Protos --plugin=protoc-gen-swift="$plugin" --plugin=protoc-gen-grpc-swift-2="$grpc_plugin" \
  --swift_out="$etcd" --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  --grpc-swift-2_out="$etcd" --grpc-swift-2_opt=Visibility=Public,Server=false,FileNaming=PathToUnderscores \
  Protos/etcd/mvccpb/kv.proto Protos/etcd/etcdserverpb/rpc.proto

out=Sources/API/Generated
rm -f "$out"/*.pb.swift "$out"/*.generated.swift
protoc -I Protos --plugin=protoc-gen-swift="$plugin" \
  --swift_out="$out" --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  Protos/cox/*.proto
# The specialised codecs read stored fields directly (see gen-codecs.py): make them visible to
# the module's other files (swift-protobuf declares them fileprivate).
sed -i -E \
  -e 's/^  fileprivate var _storage = /  var _storage = /' \
  -e 's/^  fileprivate class _StorageClass \{/  final class _StorageClass {/' \
  -e 's/^  fileprivate mutating func _uniqueStorage\(\)/  mutating func _uniqueStorage()/' \
  -e 's/^    private init\(\) \{\}/    init() {}/' \
  -e 's/^  fileprivate var (_[A-Za-z0-9]+): (.*)\? = nil$/  var \1: \2? = nil/' \
  "$out"/*.pb.swift
# Their storage classes' fields skip run-time exclusivity checks (see the script).
python3 scripts/mark-storage-unchecked.py "$out"/*.pb.swift
desc=$(mktemp)
protoc -I Protos --include_imports --include_source_info -o "$desc" Protos/cox/*.proto
python3 scripts/gen-codecs.py "$desc" "$out/JSONCodecs.generated.swift" "$out/ProtoCodecs.generated.swift" "$out/Schema.generated.swift"
rm -f "$desc"
echo "generated into $out"
