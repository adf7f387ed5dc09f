import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "demo":
        from harness.demo import main as demo

        return demo(argv[1:])
    print("usage: python -m harness demo [--method M] [--models tiny] [--suite demo] [--out DIR]", file=sys.stderr)
    return 2


sys.exit(main())
