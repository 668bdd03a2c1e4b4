#!/usr/bin/env python3
"""Starts one server and times it: process start to the first TLS response, and to the first
successful secret read; then its idle RSS. Prints one JSON line. Used by bench/startup.sh.

usage: startup-probe.py --name NAME --url https://127.0.0.1:PORT --ca CA_PEM
                        --header-file FILE --read-path PATH [--unseal-key-file FILE]
                        [--idle-seconds S] -- COMMAND [ARG ...]

The first TLS response is the first HTTP response of any status to GET /v1/sys/health over a
verified TLS 1.3 connection (a sealed OpenBao answers 503). With --unseal-key-file the probe
then unseals the server through the API, as an operator or auto-unseal would. The first read is
the first 200 answer to GET READ_PATH with the token from the header file. The probe polls every
millisecond and starts its clock just before it starts the server.
"""

import argparse
import http.client
import json
import os
import ssl
import subprocess
import sys
import time


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--header-file", required=True)
    parser.add_argument("--read-path", required=True)
    parser.add_argument("--unseal-key-file")
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    parser.add_argument("--log", default=os.devnull)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args()
    if arguments.command[:1] == ["--"]:
        arguments.command = arguments.command[1:]
    if not arguments.command:
        parser.error("missing the server command after --")
    return arguments


def tls_context(ca_file):
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def request(host, port, context, method, path, headers=None, body=None):
    """Sends one request on a new connection; returns the status, or None if none came."""
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=2)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def memory_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def wait_for(process, start, condition, what):
    while True:
        if condition():
            return (time.monotonic() - start) * 1000
        if process.poll() is not None:
            sys.exit(f"the server exited with status {process.returncode} before {what}")
        if time.monotonic() - start > 30:
            sys.exit(f"no {what} within 30 s")
        time.sleep(0.001)


def main():
    arguments = parse_arguments()
    host_port = arguments.url.removeprefix("https://").rstrip("/")
    host, _, port = host_port.rpartition(":")
    port = int(port)
    context = tls_context(arguments.ca)
    with open(arguments.header_file) as header:
        name, _, value = header.read().strip().partition(": ")
    token_headers = {name: value}

    with open(arguments.log, "ab") as log:
        start = time.monotonic()
        process = subprocess.Popen(arguments.command, stdout=log, stderr=log)
    try:
        first = wait_for(
            process,
            start,
            lambda: request(host, port, context, "GET", "/v1/sys/health") is not None,
            "TLS response",
        )

        if arguments.unseal_key_file:
            with open(arguments.unseal_key_file) as key_file:
                body = json.dumps({"key": key_file.read().strip()})
            if request(host, port, context, "PUT", "/v1/sys/unseal", body=body) != 200:
                sys.exit("unsealing the server failed")

        ready = wait_for(
            process,
            start,
            lambda: request(host, port, context, "GET", arguments.read_path, token_headers) == 200,
            "successful read",
        )

        time.sleep(arguments.idle_seconds)
        result = {
            "server": arguments.name,
            "first_tls_response_ms": round(first, 2),
            "ready_ms": round(ready, 2),
            "idle_rss_kib": memory_kib(process.pid, "VmRSS"),
            "peak_rss_kib": memory_kib(process.pid, "VmHWM"),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
