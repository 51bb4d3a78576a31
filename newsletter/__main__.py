from newsletter.cli import main

if __name__ == "__main__":  # not when a process started with spawn imports it
    main()
