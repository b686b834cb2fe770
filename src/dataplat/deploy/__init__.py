"""Deploy: the ansible-runner driver, pid-file daemons, secrets."""
