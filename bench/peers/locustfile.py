"""Locust as a peer of loadspec in `bench/run peers`: FastHttpUser (Locust's fastest client),
no wait time, one task chosen by BENCH_MODE: `get` (GET BENCH_PATH) or `upload` (POST the
prebuilt multipart body in BENCH_BODY, the same bytes loadspec sends)."""
import os

from locust import FastHttpUser, constant, task

MODE = os.environ.get("BENCH_MODE", "get")
PATH = os.environ.get("BENCH_PATH", "/")
BODY = open(os.environ["BENCH_BODY"], "rb").read() if MODE == "upload" else b""
HEADERS = {
    "content-type": os.environ.get("BENCH_CONTENT_TYPE", ""),
    "authorization": "Bearer bench-token",
}


class Peer(FastHttpUser):
    wait_time = constant(0)

    @task
    def one(self):
        if MODE == "upload":
            self.client.post(PATH, data=BODY, headers=HEADERS)
        else:
            self.client.get(PATH)
