# Where the login page leads when it was not sent there from another page.
LOGIN_REDIRECT_URL = "/chat/lobby/"
