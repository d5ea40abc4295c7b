"""`python tools/aoai_simulator ...` (runs this file directly) and `python -m aoai_simulator ...`."""

if __package__ in (None, ""):
    # Run as a directory or file: make `tools/` importable so the package's relative imports work.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from aoai_simulator.cli import main
else:
    from .cli import main

if __name__ == "__main__":
    main()
