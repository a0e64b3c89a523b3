#!/bin/sh
# Patroni runs this once, on the first leader, with a connection string as $1: the
# receiver's own role and database (RECEIVER_DB_PASSWORD from the node's environment).
set -eu
psql "$1" -v ON_ERROR_STOP=1 -v password="$RECEIVER_DB_PASSWORD" <<'SQL'
CREATE ROLE receiver LOGIN PASSWORD :'password';
CREATE DATABASE receiver OWNER receiver;
SQL
