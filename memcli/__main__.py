from memcli.cli.app import run

run()
