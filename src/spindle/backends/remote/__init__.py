"""What every backend whose run folders live elsewhere shares: running commands and moving
files there (``transport.py`` on this host, ``ssh.py`` over asyncssh) and keeping the local
run folder's logs in step with the remote one (``mirror.py``). SLURM uses them today; GCP
Batch and HealthOmics reuse them."""
