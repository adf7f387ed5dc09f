#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, for CI and for trying the slurm executor.
#
#   harness/slurm/local-cluster.sh install   apt packages (munge, slurm 22.05, slurmdbd, mariadb)
#   harness/slurm/local-cluster.sh start     configure and start the daemons; wait for an idle node
#   harness/slurm/local-cluster.sh stop      stop them by PID
#   harness/slurm/local-cluster.sh status    sinfo
#
# As root, without systemd (daemons are started by hand). Accounting (slurmdbd + mariadb) is on,
# so sacct and submitit's job states work (without it every job state reads UNKNOWN).
# Debian bookworm's slurm 22.05 + munge + slurmdbd/mariadb; no systemd, no cgroups (linuxproc).
set -euo pipefail

STATE=/run/harness-slurm          # PID of mariadbd, the database password
DBPASS_FILE=$STATE/dbpass
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"

log() { echo "[local-cluster] $*" >&2; }

wait_until() {  # wait_until SECONDS CMD...: poll CMD every 0.5 s
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then log "timed out waiting for: $*"; return 1; fi
    sleep 0.5
  done
}

cmd_install() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null \
      && command -v munged >/dev/null; then
    log "packages already installed"; return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
}

write_configs() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 2048 ))
  mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/munge /run/mysqld "$STATE"
  chown slurm:slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  chown munge:munge /run/munge
  chown mysql:mysql /run/mysqld
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  [ -s "$DBPASS_FILE" ] || (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DBPASS_FILE")
  cat > /etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5                       # cancelled tasks get SIGKILL 5 s after SIGTERM (default 30)
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$(cat "$DBPASS_FILE")
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  chmod 600 /etc/slurm/slurmdbd.conf
}

node_idle() { sinfo -h -o %t | grep -q idle; }

cmd_start() {
  if node_idle 2>/dev/null; then log "already running"; sinfo; return 0; fi
  write_configs
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then
    mariadbd --user=mysql --bind-address=127.0.0.1 >/var/log/slurm/mariadb.log 2>&1 &
    echo $! > "$STATE/mariadbd.pid"
    wait_until 60 mariadb -e 'select 1'
  fi
  mariadb <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DBPASS_FILE")';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DBPASS_FILE")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
  slurmdbd
  wait_until 60 sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw local || sacctmgr -i add cluster local >/dev/null
  slurmctld
  slurmd
  wait_until 60 node_idle
  log "single-node SLURM is up:"
  sinfo
}

stop_pidfile() {  # stop_pidfile FILE: TERM the process whose PID the file holds, wait for it
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    wait_until 30 bash -c "! kill -0 $pid" || true
  fi
  rm -f "$f"
}

cmd_stop() {
  stop_pidfile /run/slurmd.pid
  stop_pidfile /run/slurmctld.pid
  stop_pidfile /run/slurmdbd.pid
  stop_pidfile "$STATE/mariadbd.pid"
  stop_pidfile /run/munge/munged.pid
  log "stopped"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_install; cmd_start ;;
  stop) cmd_stop ;;
  status) sinfo ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
