#!/usr/bin/env python3
"""Marks the stored fields of swift-protobuf's `_StorageClass`es `@exclusivity(unchecked)`.

Large generated messages keep their fields in a class (copy-on-write storage); every read or
write of such a field paid a run-time exclusivity check, about 10 % of decoding a Pod. The
storage is only reached through the message's copy-on-write accessors, which never overlap an
access of their own, so the check proves nothing there. Marking the fields (rather than passing
-enforce-exclusivity=unchecked for the whole module, an unsafeFlag SwiftPM refuses in a
versioned dependency) keeps the checks everywhere else. Idempotent; run by gen-protos.sh.

usage: mark-storage-unchecked.py FILE.pb.swift...
"""
import re
import sys

FIELD = re.compile(r'^(    )var (_[A-Za-z0-9]+): ')

for path in sys.argv[1:]:
    lines = open(path).read().split('\n')
    inside = False
    out = []
    for line in lines:
        if line.startswith('  final class _StorageClass {'):
            inside = True
        elif inside and line.startswith('  }'):
            inside = False
        if inside and FIELD.match(line):
            line = FIELD.sub(r'\1@exclusivity(unchecked) var \2: ', line)
        out.append(line)
    open(path, 'w').write('\n'.join(out))
