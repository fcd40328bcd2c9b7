from derain.cli import main

raise SystemExit(main())
