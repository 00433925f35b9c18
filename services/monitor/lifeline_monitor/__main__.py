from lifeline_monitor.cli import main

main()
