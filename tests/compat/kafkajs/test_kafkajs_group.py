"""kafkajs (npm, 2.x) consumer groups against laminar: starts a broker, runs kafkajs_group.js.

    test_kafkajs_group.py --io uring|epoll

Needs tests/compat/kafkajs/prepare to have run (node_modules/kafkajs); fails if it has not.
"""

import sys

from test_kafkajs import run_js


def main():
    return run_js("kafkajs_group.js", "kafkajs groups",
                  config={"group.initial.rebalance.delay.ms": 300})


if __name__ == "__main__":
    sys.exit(main())
