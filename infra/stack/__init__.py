"""The running stack: compose up/down/ps/logs, swarm deploy, the native environment it mounts, the workers' queue."""
