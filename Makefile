# Thin wrapper so README, CI and people run the same commands.
.PHONY: build test demo bench

build:
	cargo build --release --workspace

test: build
	cargo test --workspace --release

demo: build
	./scripts/demo.sh
