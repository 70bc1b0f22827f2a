from drivewm.cli import main

main()
