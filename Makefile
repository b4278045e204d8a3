# drover — the front door. `make demo` runs the main job on the simulator; `make test` runs every test.
.PHONY: demo test test-node-lts lint typecheck unit build lab-up lab-down lab-demo bench setup setup-lab clean

demo: setup
	npx tsx src/cli/main.ts demo

test: setup-lab
	bash scripts/test.sh

# Tests on the current Node LTS (fetched from the npm registry into .node-lts/); see README's Node table.
test-node-lts: setup
	bash scripts/test-node-lts.sh

setup:
	bash scripts/setup.sh

setup-lab:
	bash scripts/setup.sh --lab

lint:
	npx eslint .
	npx prettier --check .

typecheck:
	npx tsc -p tsconfig.json --noEmit

build: setup
	npx tsc -p tsconfig.build.json

lab-up: setup-lab
	bash test/lab/lab.sh up

lab-down:
	bash test/lab/lab.sh down

# The demo's story on the real libvirt lab: its own 3-host lab in .lab-demo, brought up and always down.
lab-demo: setup-lab
	export LAB_DIR=$(CURDIR)/.lab-demo LAB_HOSTS=3; trap 'bash test/lab/lab.sh down' EXIT; \
	bash test/lab/lab.sh up && npx tsx src/cli/main.ts lab-demo --lab-dir "$$LAB_DIR"

bench: setup-lab
	npm run bench

clean:
	rm -rf dist coverage .test-results.json .test-results-*.json .test-lab.log
