# The two commands of the README. Both work on a fresh machine (Python 3.11+, Java 17+, Maven).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: up test install kafka-jars clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Start the whole platform in one process, send the demo telemetry, show what landed.
up: install
	$(VENV)/bin/orbitwatch up --demo

# The full test suite against real Kafka (started by the fixture) and the real ClickHouse engine.
test: install
	$(VENV)/bin/pytest -q -p no:cacheprovider

kafka-jars:
	KAFKA_DATA_DIR=$$(mktemp -d) bash -c 'deploy/local/kafka.sh start && deploy/local/kafka.sh stop'

clean:
	rm -rf $(VENV)
