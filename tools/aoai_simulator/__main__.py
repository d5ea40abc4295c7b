"""`python tools/aoai_simulator ...` (runs this file directly) and `python -m aoai_simulator ...`."""

if __package__ in (None, ""):
    # Run as a directory or file: make `tools/` importable so the package's relative imports work.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from aoai_simulator.cli import main
    except ModuleNotFoundError as exc:
        # A Python without the project's packages (the usual slip: not the .venv one).
        sys.exit(
            f"The simulator needs {exc.name!r}, which this Python ({sys.executable}) lacks. Run it "
            "with the project's environment: .venv/bin/python tools/aoai_simulator ... "
            "(bash scripts/dev or bash scripts/check creates .venv)."
        )
else:
    from .cli import main

if __name__ == "__main__":
    main()
