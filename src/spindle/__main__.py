"""``python -m spindle``: the ``spindle`` command, for when the console script is not on PATH
(tests start servers this way with the interpreter that runs them)."""

from spindle.cli import main

if __name__ == "__main__":
    main()
