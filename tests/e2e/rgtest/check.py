"""A tiny assertion collector for the end-to-end scripts: every check is
printed, failures are counted, and the script ends with a 'N passed, N
failed' line and a matching exit code."""

import sys

_passed = 0
_failed = []


def check(what, ok, detail=""):
    global _passed
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f"  [{detail}]" if detail and not ok else ""), flush=True)
    if ok:
        _passed += 1
    else:
        _failed.append(what)
    return ok


def finish():
    print(f"{_passed} passed, {len(_failed)} failed")
    for f in _failed:
        print("  failed:", f)
    sys.exit(1 if _failed else 0)
