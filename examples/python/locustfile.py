"""Load-tests a MODE project with Locust: each Locust user is one device (mode.locust).

    mode-sim --devices 1000 --devices-csv devices.csv &     # or your project's devices' CSV
    MODE_DEVICES_CSV=devices.csv locust -f examples/python/locustfile.py \
        --host mqtt://127.0.0.1:1883 --headless -u 1000 -r 500 -t 60s

Each user sends an event about once a second (3 in 4 of its sends) or a DDP write (1 in 4),
waits for the cloud's acknowledgement, and reports it to Locust's statistics; a command is
answered with an event. Distributed: the same command with --master --expect-workers N, and
N times `locust -f examples/python/locustfile.py --worker --master-host HOST`.
"""

from locust import constant_pacing

from mode import Command
from mode.locust import ModeDeviceUser


class Sensor(ModeDeviceUser):
    wait_time = constant_pacing(1.0)
    event_type = "locust"

    def on_command(self, command: Command) -> None:
        self.send_event("command-done", {"action": command.action})
