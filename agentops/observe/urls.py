from django.urls import path

from agentops.observe import views

app_name = "observe"

urlpatterns = [
    path("runs/", views.runs, name="runs"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run"),
    path("runs/<uuid:run_id>/retry", views.run_retry, name="run_retry"),
    path("runs/<uuid:run_id>/cancel", views.run_cancel, name="run_cancel"),
    path("runs/<uuid:run_id>/fork", views.run_fork, name="run_fork"),
    path("failures/", views.failures, name="failures"),
    path("insights/", views.metrics, name="metrics"),
    path("insights/alerts/", views.alerts, name="alerts"),
    path("insights/alerts/banner", views.alert_banner, name="alert_banner"),
    path("insights/storage/", views.storage, name="storage"),
    path("metrics", views.prometheus, name="prometheus"),
]
