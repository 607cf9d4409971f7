"""The ceiling: a hello-world Flask app under the same gunicorn settings as the shop.

``gunicorn bench.hello:app`` — it answers the load generator's form POST with a 303, like the
buy endpoint, without touching a database.
"""

from flask import Flask, redirect, request

app = Flask(__name__)


@app.route("/", methods=["GET", "POST"])
def hello():
    if request.method == "POST":
        request.form.get("quantity")
        return redirect("/thanks", 303)
    return "hello"
