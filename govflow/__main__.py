from govflow.cli import main

main()
