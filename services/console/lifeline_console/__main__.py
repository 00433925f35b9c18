from lifeline_console.cli import main

main()
