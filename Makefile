# Thin wrapper so README, CI and people run the same commands.
.PHONY: build test demo

build:
	cargo build --release --workspace --bins

test:
	./scripts/test.sh

demo: build
	./scripts/demo.sh
