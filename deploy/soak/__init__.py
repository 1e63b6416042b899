"""The endurance run (`make soak`): the fault run's stack, load and faults (deploy/chaos) for
half an hour at half the measured maximum rate, sampling memory, table rows, consumer lag and
latency all along; it passes when nothing was lost or duplicated, lag came back after every
fault and nothing grew without bound. See docs/soak.md."""
