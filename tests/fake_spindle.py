"""``python -m tests.fake_spindle ARGS``: the ``spindle`` command with the fakes of
:mod:`spindle.testing` registered (the ``fake`` engine, workflow type ``FAKE``, and the
``fake`` compute environment type), as an installed plugin registers them. Process tests
(:class:`tests.servers.Server` with ``fakes=True``) use it to drive many runs cheaply: the
fake engine's run is a shell loop on the real local backend, no workflow engine starts."""

from spindle.cli import main
from spindle.testing import plugins

if __name__ == "__main__":
    with plugins():
        main()
