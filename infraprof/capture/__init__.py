"""Side effects: build command lines, run external tools under watchdogs, probe versions."""
