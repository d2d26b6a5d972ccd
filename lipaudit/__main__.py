from lipaudit.cli import main

main()
