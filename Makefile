# Thin aliases for ./dev.sh, which installs what is missing before each step.
.PHONY: build demo test bench
build: ; ./dev.sh build
demo: ; ./dev.sh demo
test: ; ./dev.sh test
bench: ; ./dev.sh bench
