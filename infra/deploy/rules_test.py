"""The template's Rules, as CloudFormation asserts them before creating anything, checked with
the rehearsal's own evaluator: each rule refuses what it must and lets the rest through.

Run by `make deploy-check` (infra/deploy/check.sh); needs PyYAML (the rehearsal's venv)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rehearse  # noqa: E402

TEMPLATE = rehearse.load_template(rehearse.REPO_ROOT / "template.yaml")


def refusal(**values: str) -> str | None:
    """The refusal of the rules for these parameters (over the template's defaults), if any."""
    test_values = {"JenkinsUrl": "https://jenkins.example/", "JenkinsSecret": "jenkins", "BuildShuttleHost": "https://shuttle.example",
                   **values}
    stack = rehearse.Stack(TEMPLATE, rehearse.parameter_values(TEMPLATE, test_values), None)
    try:
        rehearse.check_rules(TEMPLATE, stack)
        return None
    except rehearse.RehearsalError as refused:
        return str(refused)


def main() -> int:
    cases = [
        ({"OpenMode": "true", "PrivateApi": "false"}, "OpenModeOnlyOnAPrivateApi"),
        ({"OpenMode": "true", "PrivateApi": "true"}, None),
        ({"OpenMode": "false", "AccessSecret": ""}, "TokensUnlessOpen"),
        ({"OpenMode": "false", "AccessSecret": "access"}, None),
    ]
    failed = 0
    for values, rule in cases:
        got = refusal(**values)
        ok = (got is None) if rule is None else (got is not None and rule in got)
        print(f"{'ok' if ok else 'FAIL'}  {values}: {got or 'accepted'}")
        failed += not ok
    print(f"template rules: {len(cases) - failed} of {len(cases)} cases as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
