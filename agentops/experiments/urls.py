from django.urls import path

from agentops.experiments import views

app_name = "experiments"

urlpatterns = [
    path("datasets/", views.datasets, name="datasets"),
    path("datasets/add", views.dataset_add, name="dataset_add"),
    path("datasets/<int:dataset_id>/", views.dataset, name="dataset"),
    path("datasets/<int:dataset_id>/export.jsonl", views.dataset_export, name="dataset_export"),
    path("datasets/<int:dataset_id>/import", views.dataset_import, name="dataset_import"),
    path("datasets/<int:dataset_id>/delete", views.dataset_delete, name="dataset_delete"),
    path("datasets/items/<int:item_id>/reference", views.item_reference, name="item_reference"),
    path("datasets/items/<int:item_id>/delete", views.item_delete, name="item_delete"),
    path("experiments/", views.experiments, name="experiments"),
    path("experiments/<int:experiment_id>/", views.experiment, name="experiment"),
    path("experiments/<int:experiment_id>/run", views.experiment_run, name="experiment_run"),
    path(
        "experiments/<int:experiment_id>/checks/<int:check_id>",
        views.check_edit,
        name="check_edit",
    ),
]
