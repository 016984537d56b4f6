"""Confine an engine with Landlock before it starts (docs/security.md, "Confinement").

A workflow is untrusted code, and in the default mode its engine runs as Spindle's own OS
account, which owns the database, the settings file and every run folder. Landlock (Linux
5.13 and later, unprivileged) lets a process give up filesystem access for itself and its
children, for good. The local backend starts every engine through this module::

    python -I -m spindle.backends.confine --deny DATA_DIR --deny SETTINGS \
        --write RUN/work ... --read RUN/support -- ENGINE ARGV...

which restricts itself, then executes the engine (through ``setpriv`` when it runs as
another account). The engine may then read, list and execute anything on the host except
the ``--deny`` paths (the rest of the file system is granted folder by folder around them),
read what ``--read`` names, write only beneath ``--write`` (its own run folder's parts and
temp folder), and use the harmless devices (``/dev/null``, terminals, ``/dev/shm``), never a
disk. Landlock also keeps it from tracing or reading ``/proc/<pid>/environ`` of processes
outside its domain (Spindle, the wrapper), and on kernels with Landlock ABI 6 from
signalling them or reaching their abstract UNIX sockets. The network is not restricted.

This module is executed before the engine on every run: it imports nothing of Spindle.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import landlockpy
from landlockpy import AccessFS, Ruleset, Scope

#: Landlock ABI this needs: 2 (Linux 5.19) lets files move between folders (REFER);
#: without it every rename across folders fails, which engines do all the time.
MIN_ABI = 2

#: What a readable place grants: read files, list folders, execute programs.
READ = AccessFS.READ_FILE | AccessFS.READ_DIR | AccessFS.EXECUTE
#: What a writable place grants: everything Spindle handles.
WRITE = (
    READ
    | AccessFS.WRITE_FILE
    | AccessFS.REMOVE_DIR
    | AccessFS.REMOVE_FILE
    | AccessFS.MAKE_DIR
    | AccessFS.MAKE_REG
    | AccessFS.MAKE_SOCK
    | AccessFS.MAKE_FIFO
    | AccessFS.MAKE_SYM
    | AccessFS.REFER
    | AccessFS.TRUNCATE
)
#: Rights a rule on a file (not a folder) may carry.
FILE_RIGHTS = (
    AccessFS.READ_FILE
    | AccessFS.WRITE_FILE
    | AccessFS.EXECUTE
    | AccessFS.TRUNCATE
    | AccessFS.IOCTL_DEV
)
#: Everything the ruleset denies unless granted (MAKE_CHAR / MAKE_BLOCK never are).
HANDLED = WRITE | AccessFS.MAKE_CHAR | AccessFS.MAKE_BLOCK | AccessFS.IOCTL_DEV
#: Devices an engine may open, read and write (``/dev`` itself is denied: raw disks are
#: there, and an engine run as root could read the database through one).
DEVICES = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
)
#: Device folders an engine may write (POSIX shared memory, semaphores).
DEVICE_FOLDERS = ("/dev/shm",)  # noqa: S108 (a grant to write there, not a file made there)


def abi() -> int:
    """The running kernel's Landlock ABI version; 0: no Landlock."""
    try:
        return landlockpy.abi_version()
    except OSError:
        return 0


def supported() -> bool:
    """Whether engines can be confined here."""
    return abi() >= MIN_ABI


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def readable(deny: Sequence[Path], top: Path = Path("/")) -> Iterator[Path]:
    """Places that together cover the file system below ``top`` except ``deny``: ``top``
    itself if no denied path lies inside it, else each of its entries in turn (links are
    skipped: what they lead to is checked where it lies)."""
    if any(_inside(top, d) for d in deny):
        return
    if not any(_inside(d, top) for d in deny):
        yield top
        return
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        if not entry.is_symlink():
            yield from readable(deny, Path(entry.path))


def _allow(ruleset: Ruleset, path: Path, access: AccessFS) -> None:
    try:
        if not path.is_dir():
            access &= FILE_RIGHTS
        ruleset.allow_path(path, access)
    except OSError:
        pass  # gone since it was listed, or not a kind of file a rule can name


def restrict(deny: Iterable[Path], write: Iterable[Path] = (), read: Iterable[Path] = ()) -> None:
    """Confine this process and its future children: see the module's docstring."""
    denied = [Path(os.path.realpath(p)) for p in (*deny, Path("/dev"))]
    with Ruleset(handled_fs=HANDLED, scoped=Scope.SIGNAL | Scope.ABSTRACT_UNIX_SOCKET) as rules:
        for place in readable(denied):
            _allow(rules, place, READ)
        for device in DEVICES:
            _allow(rules, Path(device), FILE_RIGHTS | AccessFS.READ_DIR)
        for folder in DEVICE_FOLDERS:
            _allow(rules, Path(folder), WRITE)
        for place in read:
            _allow(rules, Path(place), READ)
        for place in write:
            _allow(rules, Path(place), WRITE)
        rules.restrict()  # sets no_new_privs first: no setuid program regains anything


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="spindle.backends.confine", description="Run a command confined by Landlock."
    )
    parser.add_argument("--deny", action="append", default=[], type=Path)
    parser.add_argument("--write", action="append", default=[], type=Path)
    parser.add_argument("--read", action="append", default=[], type=Path)
    parser.add_argument("--error-file", type=Path, help="where to say why it failed")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    try:
        restrict(args.deny, args.write, args.read)
    except OSError as exc:
        message = f"could not confine the engine with Landlock: {exc}"
        if args.error_file is not None:
            args.error_file.write_text(message + "\n")
        print(f"spindle: {message}", file=sys.stderr)
        sys.exit(127)
    os.execvp(command[0], command)  # noqa: S606 (the engine, as the wrapper named it)


if __name__ == "__main__":
    main()
