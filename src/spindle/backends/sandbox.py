"""What an engine on this host runs with: its environment, the OS account it runs as, and who
may read its run folder (see docs/security.md, "What a workflow can reach").

A workflow is untrusted code. Its engine gets an environment built from an allow-list, never
Spindle's own (which holds ``SPINDLE_SECRET_KEY``, the database URL and every other setting).
When Spindle runs as root it can start engines as other OS accounts (``run_as_user``, or one
per Spindle user through ``run_as_users``) with ``setpriv``; the run folder then belongs to
that account and nobody else can read it, and Spindle's database stays unreadable to it.
By default (``confine_engines``) every engine is also confined with Landlock
(:mod:`spindle.backends.confine`): it cannot read :func:`denied_paths` (Spindle's data
folder, settings file, keys) and writes only its own run folder, whatever its account.
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import logging
import os
import pwd
import shutil
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spindle.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from spindle.config import Settings

log = logging.getLogger(__name__)

#: Variables of Spindle's environment every engine gets (a trailing ``*`` is a prefix).
ALLOWED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TMPDIR", "TZ")
#: Never handed to an engine, whatever the settings say.
DENIED_PREFIX = "SPINDLE_"
#: Where an engine looks when Spindle's environment has no PATH.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True)
class Account:
    """An OS account engines run as."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> Account:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise BackendError(f"the OS account {name!r} for engines does not exist") from None
        if entry.pw_uid == 0:
            raise BackendError(f"the OS account {name!r} is root: engines never run as root")
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


@dataclass(frozen=True)
class Sandbox:
    """How the local backend starts engines. Built from the settings (:meth:`from_settings`);
    the default is Spindle's own account with the allow-listed environment."""

    #: more variables of Spindle's environment to hand on (names, ``*`` patterns)
    passthrough: tuple[str, ...] = ()
    #: variables every engine gets, with these values
    extra: Mapping[str, str] = field(default_factory=dict)
    #: OS account for every run ("" : Spindle's own)
    run_as_user: str = ""
    #: OS account by Spindle user name (over ``run_as_user``)
    run_as_users: Mapping[str, str] = field(default_factory=dict)
    #: the ``setpriv`` program (found when accounts are configured)
    setpriv: str = "setpriv"
    #: confine every engine with Landlock (spindle.backends.confine); off: only the
    #: account and the file modes keep it out of what is not its own
    confine: bool = False
    #: what a confined engine can never read (Spindle's data folder, settings file, ...)
    deny: tuple[Path, ...] = ()
    #: folders a confined engine may write besides its run folder (shared caches)
    write: tuple[Path, ...] = ()

    @property
    def switches_account(self) -> bool:
        return bool(self.run_as_user or self.run_as_users)

    def check(self) -> None:
        """Refuse (ConfigError) what cannot be done: confinement where the kernel has no
        Landlock, accounts while Spindle is not root, setpriv missing, or an account that
        does not exist or is root."""
        from spindle.backends import confine  # Landlock: only where engines are started

        if self.confine and not confine.supported():
            raise ConfigError(
                "confine_engines needs Landlock (Linux 5.19 or later, with landlock among the "
                f"kernel's LSMs; this kernel's Landlock ABI is {confine.abi()}): set "
                "confine_engines = false to run engines unconfined (docs/security.md)"
            )
        if self.confine and os.geteuid() == 0 and shutil.which(self.setpriv) is None:
            raise ConfigError("confine_engines as root needs setpriv (util-linux) on PATH")
        if not self.switches_account:
            return
        if os.geteuid() != 0:
            raise ConfigError(
                "run_as_user / run_as_users need Spindle to run as root (it starts each engine "
                "with setpriv as the account)"
            )
        if shutil.which(self.setpriv) is None:
            raise ConfigError("run_as_user / run_as_users need setpriv (util-linux) on PATH")
        for name in {self.run_as_user, *self.run_as_users.values()} - {""}:
            try:
                Account.lookup(name)
            except BackendError as exc:
                raise ConfigError(exc.message) from None

    def account_for(self, owner: str | None) -> Account | None:
        """The account a run of ``owner`` (a Spindle user name) runs as; None: Spindle's own.
        A user missing from ``run_as_users`` with no ``run_as_user`` is refused, so that
        configuring accounts never leaves someone running as Spindle."""
        if not self.switches_account:
            return None
        name = self.run_as_users.get(owner or "", "") or self.run_as_user
        if not name:
            raise BackendError(
                f"no OS account to run engines of user {owner!r} as: add them to run_as_users "
                "or set run_as_user"
            )
        return Account.lookup(name)

    def environment(
        self,
        launch_env: Mapping[str, str],
        account: Account | None = None,
        source: Mapping[str, str] | None = None,
        workdir: str = "",
        private: Path | None = None,
    ) -> dict[str, str]:
        """The engine's whole environment: the allow-listed and passed-through variables of
        ``source`` (Spindle's environment), then the configured ones, then the engine's own
        (``launch_env``). Nothing named ``SPINDLE_*`` ever gets through. Run as an account,
        HOME is the account's home folder, or ``workdir`` if it has none (engines keep
        caches there). Confined, with ``private`` (the run's own temp folder, the only place
        outside its work it may write), TMPDIR is that folder and HOME a folder in it."""
        source = os.environ if source is None else source
        patterns = (*ALLOWED, *self.passthrough)
        env = {k: v for k, v in source.items() if _matches(k, patterns)}
        env.setdefault("PATH", DEFAULT_PATH)
        if account is not None:
            home = account.home if os.path.isdir(account.home) or not workdir else workdir
            env.update(HOME=home, USER=account.name, LOGNAME=account.name)
        if self.confine and private is not None:
            env.update(HOME=str(private / "home"), TMPDIR=str(private))
        env.update(self.extra)
        env.update(launch_env)
        return {k: v for k, v in env.items() if not k.startswith(DENIED_PREFIX)}

    def command(
        self,
        account: Account | None,
        argv: list[str],
        root: Path | None = None,
        writable: Iterable[str] = (),
        readable: Iterable[str] = (),
    ) -> list[str]:
        """``argv`` started as ``account``: setpriv changes the ids, drops every capability
        and forbids gaining privileges (setuid programs) before it executes the engine.
        Confined (and ``root``, the run folder, given), it is started by
        spindle.backends.confine first, which lets it write only the ``writable`` parts of
        its run folder and read nothing of ``deny``; as root without an account, setpriv
        then drops root's capabilities (so it cannot read around Landlock, e.g. Spindle's
        own memory or a raw disk)."""
        words: list[str] = []
        if self.confine and root is not None:
            words += [sys.executable, "-I", "-m", "spindle.backends.confine"]
            words += ["--error-file", str(root / "launch_error")]
            for path in self.deny:
                words += ["--deny", str(path)]
            for path in (*(root / name for name in writable), *self.write):
                words += ["--write", str(path)]
            for name in readable:
                words += ["--read", str(root / name)]
            words.append("--")
        setpriv = shutil.which(self.setpriv) or self.setpriv
        caps = ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        if account is not None:
            ids = [f"--reuid={account.uid}", f"--regid={account.gid}", "--init-groups"]
            words += [setpriv, *ids, *caps, "--"]
        elif words and os.geteuid() == 0:
            words += [setpriv, *caps, "--"]
        return [*words, *argv]


def hand_over(
    root: Path, account: Account | None, names: Iterable[str], readable: Iterable[str] = ()
) -> None:
    """Make a run folder readable only by the account its engine runs as (None: Spindle's
    own). The folder itself stays Spindle's (the wrapper records the exit code there, out of
    the engine's reach): 0700, or 0711 when another account must pass through it to reach
    ``names`` (the parts the engine uses), which become that account's, 0700 / owner-only.
    ``readable`` (Spindle's helper code for the engine) stays Spindle's, readable by all, so
    Spindle never writes into a folder the account controls when it prepares a run again."""
    if account is None:
        root.chmod(0o700)
        return
    root.chmod(0o711)
    for name in readable:
        if not (root / name).is_dir():
            continue
        for path in (root / name, *(root / name).rglob("*")):
            if not path.is_symlink():  # Spindle's own files, public code: read-only to all
                path.chmod(0o755 if path.is_dir() else 0o644)
    for name in names:
        top = root / name
        if not top.exists() and not top.is_symlink():
            continue
        _own(top, account)
        if top.is_dir() and not top.is_symlink():
            for folder, dirs, files in os.walk(top):  # links are not followed
                for entry in (*dirs, *files):
                    _own(Path(folder) / entry, account)


def _own(path: Path, account: Account) -> None:
    """Give ``path`` to the account, owner-only. Never through a link (the account may
    already run processes there, e.g. when a run is started again): a link is given as is,
    and the mode is set on the file opened without following links."""
    os.chown(path, account.uid, account.gid, follow_symlinks=False)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # a link (ELOOP), or gone
    try:
        mode = os.fstat(fd).st_mode
        os.fchmod(fd, stat.S_IMODE(mode) & 0o700 | (0o700 if stat.S_ISDIR(mode) else 0o600))
    finally:
        os.close(fd)


#: prctl(2) option: whether the process may be dumped, traced, or its /proc files read by
#: other processes of its account.
_PR_SET_DUMPABLE = 4


def hide_process() -> bool:
    """Make Spindle's process non-dumpable: its ``/proc/PID/environ``, memory and file
    descriptors become unreadable, and it cannot be traced, by processes of its own account
    (an engine run as Spindle's account included) without CAP_SYS_PTRACE. Engines it starts
    are dumpable again once they execute. False where prctl is missing (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def secure_data_dir(data_dir: Path, *, traversable: bool) -> None:
    """Spindle's data folder and its ``runs/`` readable by Spindle alone: 0700, or 0711 when
    engines run as other accounts (they pass through to their own run folder, but cannot
    list the folder or open the database, 0600)."""
    mode = 0o711 if traversable else 0o700
    for folder in (data_dir, data_dir / "runs"):
        folder.mkdir(mode=mode, parents=True, exist_ok=True)
        folder.chmod(mode)
    for db in data_dir.glob("spindle.db*"):
        with contextlib.suppress(OSError):
            db.chmod(0o600)


#: Sign-in modes with more than one user (``none``: everyone is the local admin).
MULTI_USER = ("basic", "oidc", "proxy-jwt")


def denied_paths(settings: Settings) -> tuple[Path, ...]:
    """What a confined engine may never read: Spindle's data folder (the SQLite database,
    every run, staging), the settings file, an SQLite database kept elsewhere, the SSH keys
    of the compute environments and of Spindle's account, the host's password hashes, and
    ``confine_deny_paths``."""
    from sqlalchemy.engine import make_url

    paths = [settings.data_dir, Path(os.environ.get("SPINDLE_CONFIG", "spindle.toml"))]
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        paths.append(Path(url.database))
    for env in settings.compute_envs.values():
        ssh = getattr(env, "ssh", None)
        if ssh is not None and ssh.key_file is not None:
            paths.append(Path(ssh.key_file))
    paths.append(Path("~/.ssh").expanduser())
    paths += [Path("/etc/shadow"), Path("/etc/gshadow")]  # an engine run as root owns them
    paths += settings.confine_deny_paths
    return tuple(dict.fromkeys(Path(os.path.realpath(p.expanduser())) for p in paths))


def sandbox_for(settings: Settings) -> Sandbox:
    """The local backend's sandbox as the settings ask. Confinement where the kernel has no
    Landlock is refused in the sign-in modes with several users (workflows would share
    Spindle's account, database and secret) unless they run as other accounts or
    ``confine_engines = false`` says so; with ``auth = "none"`` it is a warning."""
    from spindle.backends import confine

    confined = settings.confine_engines
    if confined and not confine.supported():
        account = bool(settings.run_as_user or settings.run_as_users)
        if settings.auth in MULTI_USER and not account:
            raise ConfigError(
                f"auth = {settings.auth!r} with engines run as Spindle's own OS account "
                "needs Landlock to keep workflows out of Spindle's database, secret and "
                f"other users' runs, and this kernel has none (Landlock ABI {confine.abi()}, "
                f"{confine.MIN_ABI} needed): run Spindle as root with run_as_users (or "
                "run_as_user), or set confine_engines = false to accept workflows that "
                "can read them (docs/security.md)"
            )
        log.warning(
            "this kernel has no Landlock (ABI %s): engines run unconfined (docs/security.md)",
            confine.abi(),
        )
        confined = False
    deny = denied_paths(settings) if confined else ()
    write = tuple(Path(os.path.realpath(p.expanduser())) for p in settings.confine_write_paths)
    for place in write:
        for denied in deny:
            if denied.is_relative_to(place) or place.is_relative_to(denied):
                raise ConfigError(
                    f"confine_write_paths: {place} and {denied}, which engines may not read, "
                    "overlap: an engine could read it through the other"
                )
    return Sandbox(
        passthrough=tuple(settings.engine_env_passthrough),
        extra=settings.engine_env,
        run_as_user=settings.run_as_user,
        run_as_users=settings.run_as_users,
        confine=confined,
        deny=deny,
        write=write,
    )
