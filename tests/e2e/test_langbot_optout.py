"""End-to-end: the uploader's opt-out decision against LangBot 4.10.8's, over config values x
SPACE__DISABLE_TELEMETRY values (issue 11, "Done when").

LangBot's answer is computed here the way LangBot computes it: the file through PyYAML's
FullLoader (LangBot's loader), the environment override typed by what the file's key holds
(pkg/core/stages/load_config.py), then Python truthiness of space.disable_telemetry
(pkg/telemetry/telemetry.py).  On top, telespool fails closed: an environment value that is
not clearly false ("false", "0", "no", "off" in any case, or "") always means disabled.
The uploader's decision is read from --status --json (config.telemetry_disabled), and a few
cells are run for real: disabled purges, enabled sends.
"""

import json
import unittest

import yaml

from harness import E2E, EXIT_OK, clean_env

VALUES = ["<absent>", "false", "true", "no", "yes", "off", "on", "False", "tRuE", "'false'",
          '"no"', "'0'", "''", "~", "null", "", "0", "1", "-1", "0.0", "0x0", "0.", "2", "[]",
          "[x]", "[false]", "{}", "{a: 1}", "y", "n", "2026-01-01", "!!str false", ".nan",
          "!!bool off"]
SECTIONS = ["<no space section>", "space: null", "space: {}"]
ENVS = [None, "true", "TRUE", "1", "yes", "on", "false", "False", "0", "no", "off", "",
        "true ", " false", "y", "2", "0.0", "enable"]


def config_text(value: str) -> str:
    head = "api:\n  port: 5300\n"
    if value == "<no space section>":
        return head
    if value in ("space: null", "space: {}"):
        return head + value + "\n"
    if value == "<absent>":
        return head + "space:\n  url: ''\n"
    return head + f"space:\n  url: ''\n  disable_telemetry: {value}\n"


def langbot_disabled(text: str, env) -> bool:
    """LangBot 4.10.8's reading, restated: load, override, truthiness."""
    cfg = yaml.load(text, Loader=yaml.FullLoader)
    if env is not None:
        # SPACE__DISABLE_TELEMETRY -> ["space", "disable_telemetry"]
        if "space" not in cfg:
            cfg["space"] = {}
        space = cfg["space"]
        if isinstance(space, dict):
            key = "disable_telemetry"
            if key not in space:
                space[key] = env                      # created as a string
            else:
                cur = space[key]
                if isinstance(cur, list):
                    space[key] = [i.strip() for i in env.split(",") if i.strip()]
                elif isinstance(cur, dict):
                    pass                              # dicts are skipped
                elif isinstance(cur, bool):
                    space[key] = env.lower() in ("true", "1", "yes", "on")
                elif isinstance(cur, int):
                    try:
                        space[key] = int(env)
                    except ValueError:
                        space[key] = env
                elif isinstance(cur, float):
                    try:
                        space[key] = float(env)
                    except ValueError:
                        space[key] = env
                else:
                    space[key] = env
    space = cfg.get("space", {})
    if not space:
        return False            # "if not cfg: return": never reads the flag
    return bool(space.get("disable_telemetry", False))


def expected(text: str, env) -> bool:
    fail_closed = env is not None and env.lower() not in ("false", "0", "no", "off", "")
    return langbot_disabled(text, env) or fail_closed


class OptOutMatrix(E2E):

    def test_matrix_against_langbot(self):
        lb = self.langbot(url="")
        lb.record_queries(1)
        cells = mismatches = 0
        report = []
        for value in SECTIONS + VALUES:
            text = config_text(value)
            lb.write_config(raw=text)
            for env in ENVS:
                want = expected(text, env)
                extra = {} if env is None else {"SPACE__DISABLE_TELEMETRY": env}
                r = lb.run("--status", "--json", env=clean_env(**extra))
                self.assertExit(r, EXIT_OK)
                got = json.loads(r.out)["config"]["telemetry_disabled"]
                cells += 1
                if got != want:
                    mismatches += 1
                    report.append(f"disable_telemetry: {value!r} env {env!r}: "
                                  f"uploader {got}, LangBot+fail-closed {want}")
        print(f"opt-out matrix: {cells} cells, {mismatches} mismatches")
        self.assertEqual(report, [])
        # The matrix is not vacuous: both answers occur, and LangBot's own rule
        # disables where the old uploader did not.
        self.assertTrue(expected(config_text("'false'"), None))
        self.assertTrue(expected(config_text("<absent>"), "false"))
        self.assertFalse(expected(config_text("false"), "false"))

    def test_disabled_cells_purge_and_enabled_cells_send(self):
        cases = [("<absent>", "false", True), ("'false'", None, True), ("n", None, True),
                 ("false", "true ", True), ("false", "False", False), ("''", None, False)]
        for value, env, disabled in cases:
            with self.subTest(value=value, env=env):
                space = self.space()
                lb = self.langbot(space)
                text = config_text(value).replace("url: ''", f"url: '{space.url}'")
                lb.write_config(raw=text)
                lb.record_queries(2)
                extra = {} if env is None else {"SPACE__DISABLE_TELEMETRY": env}
                r = lb.run(env=clean_env(**extra))
                self.assertExit(r, EXIT_OK)
                if disabled:
                    self.assertOutcome(lb, "purged", r)
                    self.assertEqual(space.requests(), [])
                    self.assertEqual(lb.events(), [])
                else:
                    self.assertOutcome(lb, "ok", r)
                    self.assertEqual(len(space.requests()), 2)


if __name__ == "__main__":
    unittest.main()
