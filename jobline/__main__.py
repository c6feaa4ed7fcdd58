from jobline.cli import main

main()
