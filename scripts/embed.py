#!/usr/bin/env python3
"""Turns a file into a C array: embed.py INPUT OUTPUT SYMBOL."""
import sys


def main() -> int:
    src, dst, sym = sys.argv[1:4]
    data = open(src, "rb").read()
    lines = [f"#include <stddef.h>\n\nconst unsigned char {sym}[] = {{\n"]
    for i in range(0, len(data), 16):
        lines.append("    " + ", ".join(str(b) for b in data[i:i + 16]) + ",\n")
    lines.append("    0\n};\n")
    lines.append(f"const size_t {sym}_len = {len(data)};\n")
    with open(dst, "w") as out:
        out.writelines(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
